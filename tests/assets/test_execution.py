"""`final_decisions` and `audit_lineage` with its check, materialised on a small stored day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from polars.testing import assert_frame_equal

from assets.checks import build_checks
from assets.common import stage_key
from assets.execution import build_execution_assets
from hitl_gate.audit.keys import load_or_create_signing_key
from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import load_domain
from tests.assets.stores import resources, store_stage, upstream_specs
from tests.unit.audit.tamper_home import seal_as_intake

pytestmark = pytest.mark.e2e  # materialises the real assets (small frames, a few seconds)

DOMAIN = load_domain("consumer_credit")
DAY = date(2018, 3, 5)
KEY = DAY.isoformat()
ROUTES = ["auto_approve", "auto_decline", "human_review", "human_review", "human_review"]


def _store(home: Path, verdicts: list[tuple[str, str, str]]) -> None:
    n = len(ROUTES)
    routed = pl.DataFrame(
        {
            "application_id": [f"c{i}" for i in range(n)],
            "partition_date": [DAY] * n,
            "route": ROUTES,
            "policy_version": ["p1"] * n,
            "model_version": ["m1"] * n,
            "reason_codes": [["R1"]] * n,
            "route_reason_code": ["A01", "D01", "H01", "H01", "H01"],
            "carried_from": pl.Series([None] * n, dtype=pl.Date),
            "pd": [0.01] * n,  # a column execution does not read
        }
    )
    given = pl.DataFrame(
        verdicts, schema=["case_id", "verdict", "reviewer_id"], orient="row"
    ).with_columns(pl.lit(DAY).alias("partition_date"))
    store_stage(home / "warehouse", DOMAIN, "routed_decisions", routed, [KEY])
    store_stage(home / "warehouse", DOMAIN, "reviewer_verdicts", given, [KEY])
    # Execution acts only on verdicts recorded (and sealed) in the audit database, never on a
    # frame alone: record them as intake does.
    received = datetime(2018, 3, 5, 12, tzinfo=UTC)
    with audit_connection(home / "audit.duckdb") as con:
        for number, (case_id, verdict, reviewer) in enumerate(verdicts, start=1):
            con.execute(
                "INSERT OR IGNORE INTO verdicts (domain, case_id, batch_id, verdict, reviewer_id, "
                "file_sha256, row_number, received_at) VALUES (?, ?, 'b1', ?, ?, 'f1', ?, ?)",
                [DOMAIN.name, case_id, verdict, reviewer, number, received],
            )
        key = load_or_create_signing_key(home / "secrets" / "audit.key")
        seal_as_intake(con, key, home / "checkpoints", "intake")


def _file_read(home: Path, rows: int) -> None:
    now = datetime(2018, 3, 5, tzinfo=UTC)
    with audit_connection(home / "audit.duckdb") as con:
        con.execute(
            "INSERT INTO input_files VALUES (?, ?, 'day.csv', 'sha', 1, ?, 'accepted', NULL, "
            "?, ?, 0, 1, 'digest', 'run', ?)",
            [DOMAIN.name, DAY, now, rows, rows, now],
        )


def _materialize(home: Path, slice_rows: int = 1000):  # noqa: ANN202
    checks = [c for c in build_checks(DOMAIN) if c.check_keys and any(
        k.asset_key == stage_key(DOMAIN, "audit_lineage") for k in c.check_keys
    )]  # fmt: skip
    return materialize(
        [
            *build_execution_assets(DOMAIN),
            *upstream_specs(DOMAIN, "routed_decisions", "reviewer_verdicts"),
            *checks,
        ],
        selection=[stage_key(DOMAIN, "final_decisions"), stage_key(DOMAIN, "audit_lineage")],
        partition_key=KEY,
        resources=resources(home, slice_rows),
        instance=DagsterInstance.ephemeral(),
    )


def _metadata(result, stage: str) -> dict[str, object]:  # noqa: ANN001
    (event,) = result.asset_materializations_for_node(f"consumer_credit__{stage}")
    return {k: v.value for k, v in event.metadata.items()}


def test_a_day_executes_once_writes_its_outbox_and_balances(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _store(home, [("c2", "decline", "r1"), ("c3", "approve", "r2")])
    _file_read(home, rows=len(ROUTES))
    first = _materialize(home)
    executed = _metadata(first, "final_decisions")
    assert (executed["executed_now"], executed["executed_total"]) == (4, 4)
    assert (executed["pending_review"], executed["held_or_conflict"]) == (1, 0)
    assert executed["adverse_action_notices"] == 2
    assert pl.read_parquet(home / "outbox" / DOMAIN.name / f"{KEY}.parquet").height == 4
    accounting = _metadata(first, "audit_lineage")
    assert accounting["rows_read"] == 5 and accounting["unbalanced_days"] == 0
    assert accounting["audit_entries_appended"] > 0
    (check,) = first.get_asset_check_evaluations()
    assert check.check_name == "every_case_accounted_for" and check.passed

    again = _materialize(home)
    assert _metadata(again, "final_decisions")["executed_now"] == 0
    with audit_connection(home / "audit.duckdb", read_only=True) as con:
        rows = query_frame(con, "SELECT count(*) AS n FROM executions")
    assert rows["n"].item() == 4


def test_reviewers_who_disagree_hold_the_case(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _store(home, [("c2", "decline", "r1"), ("c2", "approve", "r2"), ("c3", "escalate", "r1")])
    _file_read(home, rows=len(ROUTES))
    result = _materialize(home)
    executed = _metadata(result, "final_decisions")
    assert (executed["executed_now"], executed["held_or_conflict"]) == (2, 2)
    (check,) = result.get_asset_check_evaluations()
    assert check.passed, "held and conflicting cases are accounted as pending"


def stored_at(home: Path) -> Path:
    return home / "warehouse" / DOMAIN.name / "final_decisions" / f"{KEY}.parquet"


def test_a_day_in_slices_stores_what_the_whole_day_stores(tmp_path: Path) -> None:
    """Slices of 2 routed cases through Dagster: the staged day file the IO manager renames,
    the outbox and the metadata are the whole day's (`test_sliced_execution` compares more)."""
    found = {}
    for slice_rows in (1000, 2):
        home = tmp_path / str(slice_rows)
        _store(home, [("c2", "decline", "r1"), ("c3", "approve", "r2")])
        _file_read(home, rows=len(ROUTES))
        metadata = _metadata(_materialize(home, slice_rows), "final_decisions")
        found[slice_rows] = (
            {k: v for k, v in metadata.items() if k not in ("outbox", "slices")},
            metadata["slices"],
            pl.read_parquet(stored_at(home)),
            pl.read_parquet(home / "outbox" / DOMAIN.name / f"{KEY}.parquet").drop(
                "run_id", "executed_at"
            ),
        )
    (whole_meta, whole_slices, whole_file, whole_outbox) = found[1000]
    (meta, slices, stored, outbox) = found[2]
    assert (whole_slices, slices) == (1, 3)
    assert meta == whole_meta and whole_meta["executed_now"] == 4
    assert_frame_equal(stored, whole_file, check_exact=True)
    assert_frame_equal(outbox, whole_outbox, check_exact=True)
