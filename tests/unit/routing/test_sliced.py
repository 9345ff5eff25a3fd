"""A day routed in slices equals the same day routed whole: rows, order, types, decisions.

Small frames (40 and 30 cases, slices of 7) with everything day-wide in play: QA strata, a
review queue of 2 a day (deferrals and carried copies across the run's two days) and a
backlog from the day before the run.
"""

from __future__ import annotations

import random
import shutil
from datetime import date, timedelta
from functools import partial
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.day_files import PartitionWriter, StagedPartitions, atomic_write, split_by_day
from hitl_gate.core.slices import row_count
from hitl_gate.routing.day import RoutedDays, route_days
from hitl_gate.routing.decisions import DECISION_COLUMNS
from tests.signed_acts_fixtures import activate, keyring, staff_policy_people
from tests.unit.routing import frames

D0 = frames.D1 - timedelta(days=1)
RUN = [frames.D1, frames.D2]


def _route(home: Path, rows: list[tuple], days: list[date], slice_rows: int) -> RoutedDays:
    """What the routing asset and the IO manager do, on plain frames: route, store the days."""
    folder = home / "routed"
    keys = [d.isoformat() for d in days]
    scans = tuple(f.lazy() for f in frames.stages(rows))
    routed = route_days(
        frames.domain(),
        scans,  # type: ignore[arg-type]
        partial(audit_connection, home / "audit.duckdb", readable=[folder]),
        folder,
        partial(PartitionWriter, folder, keys, "lz4"),
        days,
        run_id="run-1",
        slice_rows=slice_rows,
        warn=lambda message: None,
    )
    if isinstance(routed.output, StagedPartitions):
        routed.output.commit()
    else:
        folder.mkdir(parents=True, exist_ok=True)
        for key, part in split_by_day(routed.output, keys):
            atomic_write(part, folder / f"{key}.parquet", "lz4")
    return routed


@pytest.fixture(scope="module")
def home_with_backlog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose unit policy is in force and whose day D0 left cases waiting for review.

    Built once per test process: every test routes in its own copy (`shutil.copytree`), never
    in this one."""
    folder = tmp_path_factory.mktemp("sliced-base")
    home = folder / "base"
    home.mkdir()
    with audit_connection(home / "audit.duckdb") as con:
        staff_policy_people(con, keyring(folder))
        activate(con, keyring(folder), frames.domain(), frames.policy(folder))
    _route(home, frames.day_of_cases(20, D0, "z"), [D0], slice_rows=1000)
    return home


def _stored(home: Path, days: list[date]) -> dict[str, pl.DataFrame]:
    found = {d.isoformat(): pl.read_parquet(home / "routed" / f"{d}.parquet") for d in days}
    with audit_connection(home / "audit.duckdb", read_only=True) as con:
        found["decisions"] = query_frame(
            con,
            "SELECT * EXCLUDE (decided_at) FROM decisions ORDER BY partition_date, case_id",
        )
    return found


def test_slices_of_7_cases_equal_the_whole_run(home_with_backlog: Path, tmp_path: Path) -> None:
    # D2 has no review case of its own: its capacity takes cases deferred on D1 (carried).
    quiet_day = [(f"b{i:03d}", frames.D2, 0.01 if i % 2 else 0.7, 1000) for i in range(30)]
    rows = frames.day_of_cases(40, frames.D1, "a") + quiet_day
    results, stored = {}, {}
    for name, slice_rows in (("whole", 1000), ("sliced", 7)):
        home = tmp_path / name
        shutil.copytree(home_with_backlog, home)
        results[name] = _route(home, rows, RUN, slice_rows)
        stored[name] = _stored(home, RUN)

    whole, sliced = results["whole"], results["sliced"]
    assert (whole.slices, sliced.slices) == (None, 10)
    assert whole.backlog.height > 0, "the day before the run left cases waiting"
    decided = whole.decided
    assert decided["review_deferred"].sum() > 0 and decided["carried_from"].is_not_null().any()
    assert decided["qa_sample"].any()
    for name, frame in stored["whole"].items():
        assert_frame_equal(stored["sliced"][name], frame, check_exact=True)
    assert_frame_equal(sliced.capacity, whole.capacity, check_exact=True)


def test_row_count_reads_the_length_of_a_scan() -> None:
    validated, _, _ = frames.stages(frames.day_of_cases(9))
    assert row_count(validated.lazy()) == 9


def test_a_run_killed_between_slices_is_recovered_by_the_next(
    home_with_backlog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed in its third range's insert: two ranges' decisions are committed and the day has
    no file; the next run replaces every decision of the days, none lost or doubled, and
    stores exactly what one uninterrupted run stores."""
    from hitl_gate.routing import key_order

    rows = frames.day_of_cases(40, frames.D1, "a")
    whole = tmp_path / "whole"
    shutil.copytree(home_with_backlog, whole)
    _route(whole, rows, [frames.D1], 1000)
    home = tmp_path / "killed"
    shutil.copytree(home_with_backlog, home)
    insert, calls = key_order.insert_decisions, []

    def killed_in_third(*args: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        insert(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(key_order, "insert_decisions", killed_in_third)
    with pytest.raises(KeyboardInterrupt):
        _route(home, rows, [frames.D1], 7)
    with audit_connection(home / "audit.duckdb", read_only=True) as con:
        (kept,) = con.execute(
            "SELECT count(*) FROM decisions WHERE partition_date = ?", [frames.D1]
        ).fetchone()  # type: ignore[misc]
    stored_whole = _stored(whole, [frames.D1])
    assert 0 < kept < stored_whole["decisions"].filter(pl.col("partition_date") == frames.D1).height
    assert not (home / "routed" / f"{frames.D1}.parquet").exists()
    assert not list((home / "routed").glob(".routing-spill-*")), "the spill is removed"

    monkeypatch.setattr(key_order, "insert_decisions", insert)
    _route(home, rows, [frames.D1], 7)
    for name, frame in stored_whole.items():
        assert_frame_equal(_stored(home, [frames.D1])[name], frame, check_exact=True)


def test_a_routed_slice_is_released_before_the_next_is_read(
    home_with_backlog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second pass holds one routed slice (87 columns at scale) at a time: when the next
    slice is read from the spill, the one whose decisions were inserted is gone."""
    import weakref

    from hitl_gate.routing import sliced

    rows = frames.day_of_cases(40, frames.D1, "a")
    home = tmp_path / "held"
    shutil.copytree(home_with_backlog, home)
    inserted: list[weakref.ref[pl.DataFrame]] = []
    still_held: list[int] = []
    make_rows, collect = sliced.decision_rows, pl.LazyFrame.collect

    def recorded(domain: object, routed: pl.DataFrame, *args: object) -> pl.DataFrame:
        inserted.append(weakref.ref(routed))
        return make_rows(domain, routed, *args)  # type: ignore[arg-type]

    def checked(self: pl.LazyFrame, *args: object, **kwargs: object) -> pl.DataFrame:
        still_held.extend(i for i, ref in enumerate(inserted) if ref() is not None)
        return collect(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sliced, "decision_rows", recorded)
    monkeypatch.setattr(pl.LazyFrame, "collect", checked)
    assert _route(home, rows, [frames.D1], 7).slices == 6
    assert len(inserted) == 6 and still_held == []


def test_a_routed_slice_is_released_before_its_decisions_are_inserted(
    home_with_backlog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slice's routed rows (87 columns at scale) go to the day file first and are freed:
    its decisions reach the audit database (DuckDB's copy of them, the key's entries) beside
    the decisions' own columns only, never beside the whole routed slice."""
    import weakref

    from hitl_gate.routing import key_order, sliced

    rows = frames.day_of_cases(40, frames.D1, "a")  # ids in order: each slice inserted as it comes
    home = tmp_path / "released"
    shutil.copytree(home_with_backlog, home)
    routed: list[weakref.ref[pl.DataFrame]] = []
    alive_at_insert: list[bool] = []
    make_rows, insert = sliced.decision_rows, key_order.insert_decisions

    def recorded(domain: object, frame: pl.DataFrame, *args: object) -> pl.DataFrame:
        routed.append(weakref.ref(frame))
        return make_rows(domain, frame, *args)  # type: ignore[arg-type]

    def inserted(con: object, decisions: pl.DataFrame) -> None:
        alive_at_insert.append(routed[-1]() is not None)
        insert(con, decisions)  # type: ignore[arg-type]

    monkeypatch.setattr(sliced, "decision_rows", recorded)
    monkeypatch.setattr(key_order, "insert_decisions", inserted)
    assert _route(home, rows, [frames.D1], 7).slices == 6
    assert alive_at_insert == [False] * 6


def test_the_wide_routed_rows_are_written_once(
    home_with_backlog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Parquet write of the sliced path, recorded: the cases' own columns (inputs,
    features, scores) reach only the day files, each row once (carried copies included), and
    the spill between the passes holds only the columns routing added to them."""
    from hitl_gate.core.staged_parquet import StagedParquet

    quiet_day = [(f"b{i:03d}", frames.D2, 0.01 if i % 2 else 0.7, 1000) for i in range(30)]
    rows = frames.day_of_cases(40, frames.D1, "a") + quiet_day
    case_columns = {c for stage in frames.stages(rows) for c in stage.columns} - {"partition_date"}
    writes: list[tuple[str, list[str], int]] = []
    write = StagedParquet.write

    def recorded(self: StagedParquet, frame: pl.DataFrame) -> None:
        writes.append((self.target.name, frame.columns, frame.height))
        write(self, frame)

    monkeypatch.setattr(StagedParquet, "write", recorded)
    home = tmp_path / "once"
    shutil.copytree(home_with_backlog, home)
    assert _route(home, rows, RUN, 7).slices == 10
    spills = [(name, columns) for name, columns, _ in writes if name.startswith(".routing-spill")]
    by_key = [columns for name, columns in spills if "-decisions-" in name]
    assert all(columns == DECISION_COLUMNS for columns in by_key)  # key_order's, if any
    spilled = [columns for name, columns in spills if "-decisions-" not in name]
    assert spilled and all(set(columns).isdisjoint(case_columns) for columns in spilled)
    assert "route" in spilled[0] and "rules_fired" in spilled[0]
    stored = sum(pl.read_parquet(home / "routed" / f"{d}.parquet").height for d in RUN)
    assert stored > len(rows), "capacity carried copies into the run's second day"
    wide = [(name, height) for name, columns, height in writes if case_columns <= set(columns)]
    assert {name for name, _ in wide} == {f"{d}.parquet" for d in RUN}
    assert sum(height for _, height in wide) == stored


def _run(shuffled: bool) -> list[tuple]:
    """The two days' cases, each day's in their ids' order or in another order."""
    quiet_day = [(f"b{i:03d}", frames.D2, 0.01 if i % 2 else 0.7, 1000) for i in range(30)]
    days = [frames.day_of_cases(40, frames.D1, "a"), quiet_day]
    for number, cases in enumerate(days):
        if shuffled:
            random.Random(number).shuffle(cases)
    return days[0] + days[1]


def _decisions_in_table_order(home: Path) -> pl.DataFrame:
    with audit_connection(home / "audit.duckdb", read_only=True) as con:
        return query_frame(
            con, "SELECT * EXCLUDE (decided_at) FROM decisions WHERE partition_date >= ? "
            "ORDER BY rowid", [frames.D1],
        )  # fmt: skip


@pytest.mark.parametrize("shuffled", [True, False], ids=["ids-shuffled", "ids-in-order"])
def test_decisions_are_inserted_in_case_id_order_the_same_whole_or_sliced(
    home_with_backlog: Path, tmp_path: Path, shuffled: bool
) -> None:
    """The table's order is the order the seal logs decisions in: both paths insert the run's
    decisions in `case_id` order (the commit of sorted keys is the cheaper), so a day routed
    in slices of 7 leaves the very rows, in the very order, that the whole day leaves."""
    rows = _run(shuffled)
    assert ([r[0] for r in rows] != sorted(r[0] for r in rows)) == shuffled
    stored = {}
    for name, slice_rows in (("whole", 1000), ("sliced", 7)):
        home = tmp_path / name
        shutil.copytree(home_with_backlog, home)
        assert (_route(home, rows, RUN, slice_rows).slices is None) == (name == "whole")
        stored[name] = _decisions_in_table_order(home)
    ids = stored["whole"].get_column("case_id").to_list()
    assert ids == sorted(r[0] for r in rows)
    assert_frame_equal(stored["sliced"], stored["whole"], check_exact=True)


@pytest.mark.parametrize("shuffled", [True, False], ids=["ids-shuffled", "ids-in-order"])
def test_a_sliced_days_decisions_are_inserted_a_range_of_ids_at_a_time(
    home_with_backlog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shuffled: bool
) -> None:
    """Bounded: each transaction inserts one range of at most a slice's ids, the ranges in
    ascending order and disjoint, together every decision once. Ids that come in order are
    inserted slice by slice as they come (no range file, each insert before the next slice
    is written); others are spilled by range and inserted after the last slice."""
    from hitl_gate.core.staged_parquet import StagedParquet
    from hitl_gate.routing import key_order

    rows = _run(shuffled)
    events: list[str] = []
    inserted: list[list[str]] = []
    insert, write = key_order.insert_decisions, StagedParquet.write

    def recorded(con: object, decisions: pl.DataFrame) -> None:
        events.append("insert")
        inserted.append(decisions.get_column("case_id").to_list())
        insert(con, decisions)  # type: ignore[arg-type]

    def written(self: StagedParquet, frame: pl.DataFrame) -> None:
        events.append("range file" if "-decisions-" in self.target.name else "file")
        write(self, frame)

    monkeypatch.setattr(key_order, "insert_decisions", recorded)
    monkeypatch.setattr(StagedParquet, "write", written)
    home = tmp_path / "ranges"
    shutil.copytree(home_with_backlog, home)
    assert _route(home, rows, RUN, 7).slices == 10
    assert [len(ids) for ids in inserted] == [7] * 10
    assert [i for ids in inserted for i in sorted(ids)] == sorted(r[0] for r in rows)
    assert not list((home / "routed").glob(".routing-spill-*")), "the range files are removed"
    if shuffled:
        assert "range file" in events and "file" not in events[events.index("insert") :]
    else:
        assert "range file" not in events and events.index("insert") < len(events) - 10


def test_a_case_twice_in_different_slices_still_fails_the_key(
    home_with_backlog: Path, tmp_path: Path
) -> None:
    """One route per case: the copies of a repeated id meet in one range, and its insert
    fails on the table's key; the day gets no file."""
    rows = frames.day_of_cases(20, frames.D1, "a")
    rows.append(rows[0])  # a000 in the first slice and in the last
    home = tmp_path / "twice"
    shutil.copytree(home_with_backlog, home)
    with pytest.raises(duckdb.Error) as failed:
        _route(home, rows, [frames.D1], 7)
    # (the aborted transaction's error surfaces from the unregistering of the rows' view)
    assert isinstance(failed.value, duckdb.ConstraintException) or isinstance(
        failed.value.__context__, duckdb.ConstraintException
    )
    assert not (home / "routed" / f"{frames.D1}.parquet").exists()
    assert not list((home / "routed").glob(".routing-spill-*"))
