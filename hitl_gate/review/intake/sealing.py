"""Verdicts and opinions are sealed by the intake that writes them, on its own connection.

A verdict or opinion row inserted by hand (someone with write access to the database) used to
be sealed like any other row by the next seal, and then looked as genuine as a signed one.
Now intake claims exactly the keys it inserted (`insert_claimed`: the keys present after its
insert and not before, inside its transaction) and seals those, and only those, before the
connection that wrote them closes (`seal_written`). DuckDB lets one process write the file, so
no other process can insert in between. Every other seal (end of run, `hitl audit seal`,
retention, execution's seal of its inputs) passes `audit.seal.STEP_OWNED`, which lists both
types with no key: it logs no new verdict or opinion and refuses each one as forged (`Stray`,
naming table, key and digest), and `hitl audit verify` names it as not in the log.

An intake killed between its commit and its seal leaves its rows unsealed: every seal refuses
them like a forged row, until the next intake recovers them (`recovery`: only if they are
exactly what the archived, signed file yields; the recovery event is sealed with them).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl

from hitl_gate.audit.events import SOURCES_BY_TYPE, source_sql
from hitl_gate.audit.seal import SEAL_MEMORY_LIMIT, SealRefused, SealResult, seal_run
from hitl_gate.core.database import insert_new_rows, registered

if TYPE_CHECKING:
    from hitl_gate.audit.signer import CheckpointSigner
    from hitl_gate.audit.witness import WitnessConfig

# Event types only intake may log (each also in `audit.seal.STEP_OWNED`), by table.
INTAKE_OWNED = {"verdict_opinions": "verdict_opinion", "verdicts": "verdict"}

Written = Mapping[str, Collection[str]]  # event type -> entity keys this intake inserted
IntakeSealer = Callable[[duckdb.DuckDBPyConnection, Written], SealResult]
"""Seals the given verdict and opinion keys on the connection that inserted them."""


def insert_claimed(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> list[str]:
    """Insert `frame`'s new rows into an intake-owned `table`; return the keys inserted.

    Call inside the writing transaction. The keys are those of the rows this insert wrote
    (`RETURNING` of an `INSERT OR IGNORE`: a row skipped because its key is present is not
    returned), so a row someone forged earlier under the same key (the insert skips ours) is
    never claimed, whatever its file or content. The table's primary key is the event
    source's key (pinned by `tests/unit/review/intake/test_claimed_keys.py`), so "skipped"
    and "key present before" are the same rows: the keys present after the insert and not
    before, which intake once read with two queries around the insert (five statements, now
    one).
    """
    source = SOURCES_BY_TYPE[INTAKE_OWNED[table]]
    sql = source_sql(con, source)
    if sql is None or frame.is_empty():
        insert_new_rows(con, table, frame)  # no table: the insert's own error, as before
        return []
    with registered(con, "intake_claimed_rows", frame.to_arrow()):
        rows = con.execute(
            f"INSERT OR IGNORE INTO {sql.table} BY NAME SELECT * FROM intake_claimed_rows "
            f"RETURNING {sql.entity_key}"
        ).fetchall()
    return sorted({str(key) for (key,) in rows})


def intake_sealer(
    signing_key: CheckpointSigner,
    checkpoint_dir: Path,
    witness: WitnessConfig | None,
    run_id: str,
    memory_limit: str | None = SEAL_MEMORY_LIMIT,
) -> IntakeSealer:
    """Intake's seal of the verdicts and opinions it wrote (run id `<run>:intake`): a seal of
    those two tables that may log only the given keys (and of the recovery events,
    `recovery.py`, which it logs as found)."""
    sources = tuple(SOURCES_BY_TYPE[t] for t in (*INTAKE_OWNED.values(), "intake_recovered"))

    def seal(con: duckdb.DuckDBPyConnection, written: Written) -> SealResult:
        owned = {t: set(written.get(t, ())) for t in INTAKE_OWNED.values()}
        return seal_run(
            con, f"{run_id}:intake", signing_key, checkpoint_dir, sources,
            memory_limit=memory_limit, witness=witness, owned=owned,
        )  # fmt: skip

    return seal


def merged(*written: Written) -> dict[str, list[str]]:
    """The keys of several intakes together (one seal for a run's files)."""
    keys: dict[str, list[str]] = {}
    for one in written:
        for event_type, claimed in one.items():
            keys.setdefault(event_type, []).extend(claimed)
    return keys


def seal_written(
    con: duckdb.DuckDBPyConnection, seal: IntakeSealer | None, written: Written
) -> str | None:
    """Seal what intake wrote; the refusal text when the seal found rows no intake wrote.

    Intake's own rows are sealed either way; forged (or a killed intake's) rows are left
    unlogged and named in the returned text, for the caller to report (every later seal and
    `verify` name them too). Nothing to seal, or no sealer: nothing happens (rows left
    unsealed are refused by every other seal: fail closed).
    """
    if seal is None or not any(written.values()):
        return None
    try:
        seal(con, written)
    except SealRefused as refused:
        return str(refused)
    return None
