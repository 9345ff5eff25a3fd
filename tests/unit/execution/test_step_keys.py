"""The output seal's ownership asked per sealed slice, from the step's own connection.

`execute_days` no longer gathers a day-wide array of the keys it executed: each slice's keys go
into a temporary table of its connection (`StepKeys`), and the seal asks, for each slice it
seals, which of that slice's keys the step wrote. Shown here: the seal is given that question,
never an array, and every question it asks is about one seal slice; the answer equals the
whole-day key set's; an execution an insider slips in between two slices is refused like one
forged after the step (`tests/unit/audit/test_step_owned_rows.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from hitl_gate.audit.keys import load_or_create_signing_key
from hitl_gate.audit.seal import OwnedKeys, SealRefused
from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.execution.execute import execute_days
from hitl_gate.execution.sealed_inputs import input_sealer, output_sealer
from hitl_gate.execution.step_keys import StepKeys
from tests.unit.audit.tamper_home import add_row
from tests.unit.audit.test_step_owned_rows import DAY, DOMAIN, NO_VERDICTS, _logged, _routed

ROUTES = ["auto_approve", "auto_decline", "human_review"] * 8  # 16 executed, 8 pending


def _slices(routed: pl.DataFrame, rows: int) -> Iterator[pl.DataFrame]:
    for offset in range(0, routed.height, rows):
        yield routed.slice(offset, rows)


def _execute(
    home: Path, slices: Iterator[pl.DataFrame], seal_rows: int, asked: list | None = None
) -> None:
    """`execute_days` in slices, its output seal cut into slices of `seal_rows` rows, with
    what the seal was given and asked recorded in `asked` (when given)."""
    key = load_or_create_signing_key(home / "secrets" / "audit.key")
    seal = output_sealer(key, home / "checkpoints", None, "run-1", batch_rows=seal_rows)

    def recorded_seal(con: object, keys: OwnedKeys) -> object:
        assert callable(keys), f"the seal was given {type(keys).__name__}, not a question"

        def owns(entity_keys: pa.ChunkedArray) -> pa.Array:
            mask = keys(entity_keys)
            assert asked is not None
            asked.append((entity_keys.to_pylist(), mask.to_pylist()))
            return mask

        return seal(con, owns)  # type: ignore[arg-type]

    execute_days(
        DOMAIN, slices, NO_VERDICTS, partial(audit_connection, home / "audit.duckdb"),
        home / "outbox", [DAY], run_id="run-1",
        seal_inputs=input_sealer(key, home / "checkpoints", None, "run-1"),
        seal_outputs=seal if asked is None else recorded_seal, page_rows=5,
    )  # fmt: skip


def test_the_seal_asks_per_sealed_slice_and_gets_the_whole_days_answer(tmp_path: Path) -> None:
    asked: list[tuple[list[str], list[bool]]] = []
    _execute(tmp_path, _slices(_routed(ROUTES), 5), 4, asked)
    with audit_connection(tmp_path / "audit.duckdb", read_only=True) as con:
        executed = query_frame(con, "SELECT case_id FROM executions")["case_id"].to_list()
        notices = query_frame(con, "SELECT case_id FROM adverse_actions")["case_id"].to_list()
    assert len(executed) == 16 and len(notices) == 8
    day_keys = {f"{DOMAIN.name}/{case}" for case in executed}
    # Executions then notices, each sealed in slices of about 4 rows (cut by a hash of the
    # key): several questions per table, none about a whole table, together every row once.
    assert len(asked) >= 4
    assert all(len(keys) < len(executed) for keys, _ in asked)
    assert sorted(k for keys, _ in asked for k in keys) == sorted(
        [f"{DOMAIN.name}/{c}" for c in executed + notices]
    )
    for keys, mask in asked:  # each answer is the whole-day key set's
        assert mask == [k in day_keys for k in keys]
    for case in executed:
        assert _logged(tmp_path, f"{DOMAIN.name}/{case}") >= 1


def test_an_execution_forged_between_two_slices_is_refused(tmp_path: Path) -> None:
    """The insider inserts an execution for a case awaiting review (c2, in the first slice)
    while the step is between its first and second slice, in this process (another process
    cannot open the file). The step's keys do not hold it: the seal refuses it and logs the
    rest."""
    routed = _routed(ROUTES)

    def slices_with_a_forgery() -> Iterator[pl.DataFrame]:
        for number, part in enumerate(_slices(routed, 6)):
            if number == 1:
                with audit_connection(tmp_path / "audit.duckdb") as insider:
                    add_row(insider, "executions", 99, domain=DOMAIN.name, case_id="c2",
                            partition_date=DAY, action="approve", decided_by="policy",
                            reviewer_id=None)  # fmt: skip
            yield part

    with pytest.raises(SealRefused, match="executions consumer_credit/c2: not written by the step"):
        _execute(tmp_path, slices_with_a_forgery(), 4)
    assert _logged(tmp_path, "consumer_credit/c2") == 0
    assert not [p for p in (tmp_path / "outbox").rglob("*") if p.is_file()]  # refused: none
    assert _logged(tmp_path, "consumer_credit/c0") == 1
    assert _logged(tmp_path, "consumer_credit/c21") == 1  # in the last slice


def test_step_keys_answer_for_the_keys_recorded(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "audit.duckdb") as con:
        keys = StepKeys(con, "d")
        keys.add(pl.Series(["a", "b"]))
        keys.add(pl.Series([], dtype=pl.String))
        keys.add(pl.Series(["c", "a"]))
        asked = pa.chunked_array([["d/a", "e/a", "d/z"], ["d/c", "d/b", "d/a"]])
        assert keys.owns(asked).to_pylist() == [True, False, False, True, True, True]
        assert keys.owns(pa.chunked_array([], pa.string())).to_pylist() == []
