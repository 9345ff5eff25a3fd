"""The honest floor (`bench.floor`) does the work it claims, so its time cannot hide a skip.

On a small hand-made day: every record is chained once (per kind, as many entries as the day
has records), the chain and the checkpoint verify with the audit code's own rules, a record's
digest is the one the sealer computes for the same row, the blocking expectations can block,
and the day's metrics equal what `observability.metrics.decision_metrics` computes.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.baseline import BaselineDay
from bench.floor import floor_work
from hitl_gate.audit.chain import GENESIS_HASH, entry_hash, merkle_root
from hitl_gate.audit.events import EventSource, source_sql
from hitl_gate.audit.keys import public_key_from_hex
from hitl_gate.audit.seal import checkpoint_message
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.observability.daily import METRIC_CASE_COLUMNS
from hitl_gate.observability.metrics import decision_metrics

DAY = date(2018, 3, 18)
ROUTES = ["auto_approve"] * 5 + ["auto_decline"] * 3 + ["human_review"] * 4


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _day(tmp_path: Path, domain: DomainConfig, term: float = 36.0) -> BaselineDay:
    """A decided day of 12 cases and 2 refused rows, as `bench.baseline.decide_day` leaves it."""
    n = len(ROUTES)
    ids = [f"C{i:03d}" for i in range(n + 2)]
    landing = tmp_path / "landing.csv"
    landing.write_text("id\n" + "\n".join(ids) + "\n", encoding="utf-8")
    flagged = pl.DataFrame({domain.case_id: ids, "_valid": [True] * n + [False, False]})
    case_features = pl.DataFrame(
        {
            domain.case_id: ids[:n],
            "loan_to_income": [0.3] * n,
            "credit_utilization": [0.5] * n,
            "credit_history_years": [10.0] * n,
            "term": [term] + [60.0] * (n - 1),
            "interest_rate": [12.5] * n,
        }
    )
    routed = pl.DataFrame(
        {
            domain.case_id: ids[:n],
            "pd": [0.01 * (i + 1) for i in range(n)],
            "risk_band": ["A", "B", "C", "D", "E", "B"] * 2,
            "reason_codes": ["R1;R2"] * n,
            "model_version": "3",
            "policy_version": "2024.1",
            "route": ROUTES,
            "route_rule_id": ["AUTO"] * 8 + ["REV-1"] * 4,
            "review_queue": [None] * 8 + ["credit_analyst"] * 3 + ["senior_underwriter"],
            "partition_date": DAY,
            "decided_inputs_only": 1.0,  # an input column: not part of a decision record
        }
    )
    database = tmp_path / "decisions.duckdb"
    con = duckdb.connect(str(database))
    con.register("incoming", routed.to_arrow())
    con.execute("CREATE TABLE decisions AS SELECT * FROM incoming")
    con.close()
    return BaselineDay([landing], flagged, case_features, routed, database)


@pytest.fixture
def floored(tmp_path: Path, domain: DomainConfig):
    signer = Ed25519PrivateKey.generate()
    done = _day(tmp_path, domain)
    result = floor_work(done, domain, DAY, signer, tmp_path, run_id="floor-test")
    return done, result, signer


def test_every_record_is_chained_once(floored) -> None:
    done, result, _ = floored
    assert result.records == {
        "input_file_recorded": 1,
        "row_quarantined": 2,
        "decision": 12,
        "case_sent_for_review": 4,
        "execution": 8,
        "adverse_action": 3,
        "partition_accounted": 1,
    }
    con = duckdb.connect(str(done.decisions_db), read_only=True)
    assert con.execute("SELECT count(*), min(seq), max(seq) FROM audit_log").fetchone() == (
        result.entries, 1, result.entries,
    )  # fmt: skip
    names = "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
    columns = {c for (c,) in con.execute(names, ["case_decisions"]).fetchall()}
    assert "decided_inputs_only" not in columns and {"pd", "route", "risk_band"} <= columns


def test_chain_and_signed_checkpoint_verify_by_the_audit_rules(floored, tmp_path: Path) -> None:
    done, result, signer = floored
    con = duckdb.connect(str(done.decisions_db), read_only=True)
    rows = con.execute("SELECT seq, entry_hash, entry FROM audit_log ORDER BY seq").fetchall()
    previous = GENESIS_HASH
    for _, stored_hash, entry in rows:
        assert entry.startswith(previous + "|")
        assert entry_hash(entry) == stored_hash
        previous = stored_hash
    checkpoint = result.checkpoint
    assert checkpoint["head_hash"] == previous
    assert (checkpoint["first_seq"], checkpoint["last_seq"]) == (1, len(rows))
    assert checkpoint["merkle_root"] == merkle_root([h for _, h, _ in rows], 16)
    public = public_key_from_hex(checkpoint["public_key"])
    public.verify(bytes.fromhex(checkpoint["signature"]), checkpoint_message(checkpoint))
    assert json.loads((tmp_path / "checkpoint.json").read_text()) == checkpoint
    forged = {**checkpoint, "last_seq": checkpoint["last_seq"] - 1}
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidSignature
        public.verify(bytes.fromhex(checkpoint["signature"]), checkpoint_message(forged))


def test_a_decision_digest_is_the_one_the_sealer_computes(floored) -> None:
    done, _, _ = floored
    con = duckdb.connect(str(done.decisions_db), read_only=True)
    sealer = source_sql(
        con, EventSource("decision", "case_decisions", ("domain", "case_id"),
                         ("run_id", "decided_at")), sha256="sha256",
    )  # fmt: skip
    assert sealer is not None
    expected = dict(
        con.execute(
            f"SELECT {sealer.entity_key}, {sealer.content_digest} FROM case_decisions"
        ).fetchall()
    )
    logged = dict(
        con.execute(
            "SELECT e.key, e.digest FROM (SELECT json_extract_string(substr(entry, 66), "
            "['$.key', '$.digest', '$.type']) AS x FROM audit_log), "
            "LATERAL (SELECT x[1] AS key, x[2] AS digest, x[3] AS type) e "
            "WHERE e.type = 'decision'"
        ).fetchall()
    )
    assert logged == expected and len(logged) == 12


def test_a_failing_blocking_expectation_blocks(tmp_path: Path, domain: DomainConfig) -> None:
    done = _day(tmp_path, domain, term=48.0)  # not in the declared set [36, 60]
    result = floor_work(done, domain, DAY, Ed25519PrivateKey.generate(), tmp_path, run_id="x")
    failed = [label for label, ok, _ in result.expectations if not ok]
    assert failed == ["expect_column_values_to_be_in_set(term)"]
    assert result.blocked
    assert len(result.expectations) == 7  # every expectation of the blocking suite


def test_day_metrics_equal_the_pipelines_metric_function(floored) -> None:
    done, result, _ = floored
    con = duckdb.connect(str(done.decisions_db), read_only=True)
    cases = con.sql(
        "SELECT d.partition_date, d.case_id, d.route, d.route_rule_id, d.review_queue, "
        "d.risk_band, d.policy_version, d.pd, e.action AS executed_action, e.decided_by "
        "FROM case_decisions d LEFT JOIN executions e USING (case_id) ORDER BY d.case_id"
    ).pl()
    missing = [c for c in METRIC_CASE_COLUMNS if c not in cases.columns]
    cases = cases.with_columns(
        pl.lit(None, pl.Datetime("us", "UTC") if c.endswith("_at") else pl.String).alias(c)
        for c in missing
    ).select(METRIC_CASE_COLUMNS)
    expected = decision_metrics(
        cases, as_of=datetime(2018, 3, 19, tzinfo=UTC), decline_bands=["D", "E"]
    ).filter(pl.col("metric").is_in(["cases", "rate"]))
    got = result.metrics.sort("partition_date", "metric", "dimension", "key")
    assert got.rows() == expected.rows()
    assert got.height == 25


def test_the_report_gives_both_ratios_from_the_same_repeats() -> None:
    from bench.measure import RunFigures
    from bench.pipeline import markdown, summarise

    def runs(mode: str, walls: list[float]) -> list[RunFigures]:
        return [RunFigures(mode, 1000, w, w * 2, 100.0, {"a": 1.0}) for w in walls]

    summary = summarise(
        1000,
        {"pipeline": runs("pipeline", [30, 20, 25]), "floor": runs("floor", [10, 12, 11]),
         "baseline": runs("baseline", [5, 4, 6])},
    )  # fmt: skip
    assert summary["ratio"] == pytest.approx(25 / 11)
    assert summary["baseline_ratio"] == pytest.approx(25 / 5)
    assert summary["cpu_ratio"] == pytest.approx(50 / 22)
    table = markdown([summary], "test")
    assert "| ratio to floor | ratio to baseline |" in table
    assert "| 1,000 | 25.0 | 11.0 | 5.0 | 2.27 | 5.00 |" in table
