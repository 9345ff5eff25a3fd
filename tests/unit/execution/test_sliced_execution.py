"""A day executed in slices equals the same day executed whole: actions, rows, order, the seal.

40 routed cases (not in case-id order, plus carried copies) with automatic routes, reviewer
verdicts (with reason codes, a conflict, an escalation), a gold case: executed once whole and
once in slices of 7 cases, the executions read back in pages of 7, then re-run
with every route changed (nothing executes twice). Compared: the step's actions (rows, order,
types), the `executions` and `adverse_actions` rows, the outbox file (rows in case order), the
counts and the entity keys the seals logged. Not compared: the tables' physical row order, which
DuckDB's `INSERT OR IGNORE` sets by its own hashing even for one whole-day insert.
"""

from __future__ import annotations

import gc
import shutil
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.audit.keys import load_or_create_signing_key
from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.day_files import PartitionWriter, StagedPartitions
from hitl_gate.core.slices import output_sink, slice_ranges
from hitl_gate.execution.execute import ExecutedDays, execute_days
from hitl_gate.execution.final_actions import final_actions, routed_columns
from hitl_gate.execution.sealed_inputs import input_sealer, output_sealer
from tests.unit.audit.tamper_home import add_row, seal_as_intake
from tests.unit.core.held_slices import HeldSlices
from tests.unit.execution.test_execute import DAY, DOMAIN

N = 40
ROUTES = ["auto_approve", "auto_decline", "human_review", "human_review", "auto_decline"]
GOLD = "c05"


def _routed() -> pl.DataFrame:
    ids = [f"c{(i * 17) % N:02d}" for i in range(N)]  # a case order that is not the id order
    routes = [ROUTES[i % len(ROUTES)] for i in range(N)]
    own = pl.DataFrame(
        {
            DOMAIN.case_id: ids,
            "partition_date": [DAY] * N,
            "route": routes,
            "policy_version": ["p1"] * N,
            "model_version": ["m1"] * N,
            "reason_codes": [["R1", "R2"] if i % 3 else ["R3"] for i in range(N)],
            "route_reason_code": ["D01" if r == "auto_decline" else "A01" for r in routes],
            "carried_from": pl.Series([None] * N, dtype=pl.Date),
        }
    )
    carried = (
        own.filter(pl.col("route") == "human_review")
        .head(3)
        .with_columns(
            pl.lit(date(2018, 3, 6)).alias("partition_date"), pl.lit(DAY).alias("carried_from")
        )
    )
    return pl.concat([own, carried]).select(routed_columns(DOMAIN.case_id))


def _verdicts(routed: pl.DataFrame) -> pl.DataFrame:
    reviewed = routed.filter(pl.col("route") == "human_review")[DOMAIN.case_id].to_list()
    verdicts = [
        (case, ["decline", "approve", "escalate"][n % 3], f"r{n % 2}", "V1" if n % 2 else None)
        for n, case in enumerate(reviewed[:12])
    ]
    verdicts.append((reviewed[1], "decline", "r9", "V2"))  # reviewers disagree: a conflict
    return pl.DataFrame(
        verdicts, schema=["case_id", "verdict", "reviewer_id", "verdict_reason_code"], orient="row"
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An audit database with the day's verdicts recorded and sealed and a gold case; each run
    executes in its own copy."""
    home = tmp_path_factory.mktemp("execution-base")
    verdicts = _verdicts(_routed()).unique("case_id", keep="first", maintain_order=True)
    with audit_connection(home / "audit.duckdb") as con:
        for n, row in enumerate(verdicts.iter_rows(named=True), start=1):
            add_row(con, "verdicts", n, domain=DOMAIN.name, **row)
        seal_as_intake(con, _key(home), home / "checkpoints", "intake")
        con.execute(
            "INSERT INTO review_gold_cases VALUES (?, ?, 'APP-old', 'decline', 'outcome', "
            "'credit_analyst', ?, ?)",
            [DOMAIN.name, GOLD, DAY, datetime(2018, 3, 5, tzinfo=UTC)],
        )
    return home


def _key(home: Path):  # noqa: ANN202
    return load_or_create_signing_key(home / "secrets" / "audit.key")


def _execute(
    home: Path,
    routed: pl.DataFrame,
    slice_rows: int,
    run: str,
    verdicts: pl.DataFrame | pl.LazyFrame | None = None,
) -> ExecutedDays:
    """What the `final_decisions` asset does, on plain frames: slices in, staged day files out
    (the verdicts a frame unless given, e.g. as the asset's scan)."""
    ranges = slice_ranges(routed.height, slice_rows)
    folder, keys = home / "final", [DAY.isoformat(), "2018-03-06"]
    with output_sink(partial(PartitionWriter, folder, keys, "lz4"), len(ranges) > 1) as sink:
        done = execute_days(
            DOMAIN, (routed.slice(o, n) for o, n in ranges),
            _verdicts(_routed()) if verdicts is None else verdicts,
            partial(audit_connection, home / "audit.duckdb"), home / "outbox", [DAY],
            run_id=run, sink=sink, page_rows=slice_rows,
            seal_inputs=input_sealer(_key(home), home / "checkpoints", None, run),
            seal_outputs=output_sealer(_key(home), home / "checkpoints", None, run),
        )  # fmt: skip
    if isinstance(done.actions, StagedPartitions):
        done.actions.commit()
    return done


def _stored(home: Path, done: ExecutedDays) -> dict[str, object]:
    actions = done.actions
    if isinstance(actions, StagedPartitions):
        actions = pl.read_parquet(home / "final" / f"{DAY}.parquet")
    with audit_connection(home / "audit.duckdb", read_only=True) as con:
        tables = {
            table: query_frame(
                con, f"SELECT * EXCLUDE (run_id, {at}) FROM {table} ORDER BY case_id"
            )
            for table, at in (("executions", "executed_at"), ("adverse_actions", "issued_at"))
        }
        logged = query_frame(
            con,
            "SELECT json_extract_string(substr(entry, 66), '$.type') AS type, "
            "json_extract_string(substr(entry, 66), '$.key') AS key "
            "FROM audit_log ORDER BY type, key",
        )
    return {
        "actions": actions,
        **tables,
        "logged": logged,
        "outbox": pl.read_parquet(home / "outbox" / f"{DAY}.parquet").drop("run_id", "executed_at"),
        "outcomes": done.outcomes,
        "counts": (done.executed_now, done.executed_total, done.notices, done.refused),
    }


def _assert_same(whole: dict[str, object], sliced: dict[str, object]) -> None:
    for name, value in whole.items():
        if isinstance(value, pl.DataFrame):
            assert isinstance(sliced[name], pl.DataFrame)
            try:
                assert_frame_equal(sliced[name], value, check_exact=True)  # type: ignore[arg-type]
            except AssertionError as exc:
                raise AssertionError(f"{name}: sliced differs from whole\n{exc}") from None
        else:
            assert sliced[name] == value, name


def test_slices_of_a_day_execute_as_the_whole_day(base: Path, tmp_path: Path) -> None:
    slice_rows = 7  # 6 slices of routed cases, 5 pages of executions
    homes = {size: tmp_path / str(size) for size in (1000, slice_rows)}
    routed = _routed()
    stored = {}
    for size, home in homes.items():
        shutil.copytree(base, home)
        stored[size] = _stored(home, _execute(home, routed, size, "run-1"))
    whole, sliced = stored[1000], stored[slice_rows]
    executions = whole["executions"]
    assert isinstance(executions, pl.DataFrame) and executions.height > 2 * slice_rows
    assert GOLD not in executions["case_id"].to_list()
    assert whole["outbox"].height == executions.height  # type: ignore[attr-defined]
    _assert_same(whole, sliced)

    # Re-routed: every case to review. Executed cases stay executed, nothing runs twice.
    rerouted = routed.with_columns(pl.lit("human_review").alias("route"))
    for size, home in homes.items():
        stored[size] = _stored(home, _execute(home, rerouted, size, "run-2"))
    assert stored[1000]["counts"][0] == 0  # type: ignore[index]
    _assert_same(stored[1000], stored[slice_rows])


def test_a_routed_slice_is_released_before_the_next_is_read(base: Path, tmp_path: Path) -> None:
    """The step holds one routed slice at a time: the previous slice (and the actions made
    from it) are gone when the next is read."""
    home = tmp_path / "home"
    shutil.copytree(base, home)
    routed = _routed()
    slices = HeldSlices(routed, 7)

    folder, keys = home / "final", [DAY.isoformat(), "2018-03-06"]
    with output_sink(partial(PartitionWriter, folder, keys, "lz4"), True) as sink:
        done = execute_days(
            DOMAIN, slices, _verdicts(routed), partial(audit_connection, home / "audit.duckdb"),
            home / "outbox", [DAY], run_id="run-1", sink=sink, page_rows=7,
        )  # fmt: skip
    assert slices.count == 7 and done.executed_now > 7


@pytest.mark.parametrize("page_rows", [1000, 7])
def test_no_page_of_executions_is_held_while_the_output_seal_runs(
    base: Path, tmp_path: Path, page_rows: int
) -> None:
    """The output seal is where the step peaks: the pages of executions (the notices' and the
    outbox's) are gone by then, a lone page too (it waits on disk for `commit`), and the
    outbox files are still the ones a whole-day write gives."""
    home = tmp_path / "home"
    shutil.copytree(base, home)
    seal = output_sealer(_key(home), home / "checkpoints", None, "run-1")
    alive: list[int] = []

    def sealing(con: object, keys: object) -> object:
        gc.collect()
        alive.extend(
            frame.height
            for frame in gc.get_objects()
            if isinstance(frame, pl.DataFrame) and {"run_id", "executed_at"} <= set(frame.columns)
        )
        return seal(con, keys)  # type: ignore[arg-type]

    routed = _routed()
    done = execute_days(
        DOMAIN, routed, _verdicts(routed), partial(audit_connection, home / "audit.duckdb"),
        home / "outbox", [DAY], run_id="run-1", page_rows=page_rows,
        seal_inputs=input_sealer(_key(home), home / "checkpoints", None, "run-1"),
        seal_outputs=sealing,
    )  # fmt: skip
    assert done.executed_total > 7 and alive == []
    outbox = pl.read_parquet(home / "outbox" / f"{DAY}.parquet")
    assert outbox["case_id"].to_list() == sorted(outbox["case_id"].to_list())
    assert outbox.height == done.executed_total
    assert not list((home / "outbox").glob(".*.tmp"))


@pytest.mark.parametrize("scanned", [True, False])
def test_verdicts_are_read_per_slice_from_the_stored_day(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scanned: bool
) -> None:
    """Given the stored verdicts (as the asset's scan, or a frame), each slice's final actions
    see its own cases' verdicts only, and the day executes as it does whole."""
    import hitl_gate.execution.execute as execute

    routed = _routed()
    stored_verdicts = tmp_path / "verdicts.parquet"
    _verdicts(routed).write_parquet(stored_verdicts)
    seen: list[tuple[set[str], set[str]]] = []

    def recording(part: pl.DataFrame, verdicts: pl.DataFrame, *args: object, **kw: object):  # noqa: ANN202
        seen.append((set(verdicts["case_id"]), set(part[DOMAIN.case_id])))
        return final_actions(part, verdicts, *args, **kw)  # type: ignore[arg-type]

    homes = {"whole": tmp_path / "whole", "sliced": tmp_path / "sliced"}
    for home in homes.values():
        shutil.copytree(base, home)
    whole = _stored(homes["whole"], _execute(homes["whole"], routed, 1000, "run-1"))
    monkeypatch.setattr(execute, "final_actions", recording)
    sliced = _stored(
        homes["sliced"],
        _execute(
            homes["sliced"],
            routed,
            7,
            "run-1",
            pl.scan_parquet(stored_verdicts) if scanned else pl.read_parquet(stored_verdicts),
        ),  # fmt: skip
    )
    _assert_same(whole, sliced)
    assert len(seen) == 7 and any(verdicts for verdicts, _ in seen)  # 43 routed rows
    for verdicts, cases in seen:
        assert verdicts <= cases


def test_the_step_works_under_its_memory_limit_and_drops_the_reasons_before_its_seal(
    base: Path, tmp_path: Path
) -> None:
    """DuckDB's limit on the step's connection is the step's own while the output seal runs
    (not 80% of the machine, not the general seal's 1 GB), and the declined cases' reasons,
    read by the notices alone, are gone by then."""
    home = tmp_path / "home"
    shutil.copytree(base, home)
    seal = output_sealer(_key(home), home / "checkpoints", None, "run-1", "48MB")
    during: list[tuple[str, int]] = []

    def sealing(con: duckdb.DuckDBPyConnection, keys: object) -> object:
        (limit,) = con.execute("SELECT current_setting('memory_limit')").fetchall()[0]
        (temp,) = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'execution_reasons'"
        ).fetchall()[0]
        result = seal(con, keys)  # type: ignore[arg-type]
        (sealed_under,) = con.execute("SELECT current_setting('memory_limit')").fetchall()[0]
        during.extend([(str(limit), temp), (str(sealed_under), temp)])
        return result

    routed = _routed()
    done = execute_days(
        DOMAIN, routed, _verdicts(routed), partial(audit_connection, home / "audit.duckdb"),
        home / "outbox", [DAY], run_id="run-1", page_rows=7,
        seal_inputs=input_sealer(_key(home), home / "checkpoints", None, "run-1"),
        seal_outputs=sealing, memory_limit="48MB",
    )  # fmt: skip
    assert done.executed_total > 7 and done.notices > 0
    assert [temp for _, temp in during] == [0, 0]
    for limit, _ in during:  # 48 MB as DuckDB shows it: 45.7 MiB (45.6 once restored)
        number, unit = limit.split()
        assert unit == "MiB" and 45 < float(number) < 46, limit
