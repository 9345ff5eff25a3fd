"""A small sealed audit home for the tamper corpus: every sealed table holds rows, three runs
sealed under three checkpoints, each checkpoint also published to a witness outside the home.

Rows are made from the live schema (each column gets a plain value of its type), so a table
added to the schema needs no change here beyond naming its rows.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from hitl_gate.audit.events import SOURCES_BY_TYPE, source_sql
from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.seal import SealResult, seal_run
from hitl_gate.audit.signer import CheckpointSigner
from hitl_gate.audit.witness import WitnessConfig
from hitl_gate.core.database import audit_connection
from hitl_gate.review.intake.sealing import INTAKE_OWNED, intake_sealer
from tests.blank_audit_db import blank_if_missing

DOMAIN = "demo"
TS = "2026-01-02 10:00:00+00"


@dataclass(frozen=True)
class TamperHome:
    """Paths of one sealed home and its witness (a copy per case: mutate freely)."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / "home" / "audit.duckdb"

    @property
    def checkpoints(self) -> Path:
        return self.root / "home" / "checkpoints"

    @property
    def key_file(self) -> Path:
        return self.root / "home" / "secrets" / "audit.key"

    @property
    def witness(self) -> WitnessConfig:
        return WitnessConfig(self.root / "home-witness")

    def key(self) -> Any:
        return load_or_create_signing_key(self.key_file)

    def public_key(self) -> str:
        return public_key_hex(self.key())

    def copy_to(self, target: Path) -> TamperHome:
        shutil.copytree(self.root, target)
        return TamperHome(target)

    def seal(self, con: duckdb.DuckDBPyConnection, run_id: str) -> Any:
        return seal_run(con, run_id, self.key(), self.checkpoints, witness=self.witness)


def _value(kind: str, name: str, n: int) -> Any:
    kind = kind.upper()
    if kind.endswith("[]"):
        return [f"{name}-{n}"]
    if kind in ("BIGINT", "INTEGER", "UBIGINT", "SMALLINT"):
        return n
    if kind in ("DOUBLE", "FLOAT") or kind.startswith("DECIMAL"):
        return 0.25 + n
    if kind == "BOOLEAN":
        return False
    if kind == "DATE":
        return "2026-01-02"
    if kind.startswith("TIMESTAMP"):
        return TS
    return f"{name}-{n}"


def add_row(con: duckdb.DuckDBPyConnection, table: str, n: int = 1, **values: Any) -> None:
    """Insert one row: `values` for the named columns, a plain value of its type elsewhere."""
    add_rows(con, table, [(n, values)])


def add_rows(
    con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[tuple[int, Mapping[str, Any]]]
) -> None:
    """Insert `add_row(con, table, n, **values)` for each (n, values) of `rows`, in one
    statement (a statement a row cost about 4 ms, most of it DuckDB planning the insert)."""
    columns = con.execute(  # DuckDB's own catalogue: what information_schema.columns is a
        # view of, at half its cost (set-ups add over a thousand rows)
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
        "current_database() AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    names = ", ".join(c for c, _ in columns)
    casts = ", ".join(f"c{i}::{k}" for i, (_, k) in enumerate(columns))
    aliases = ", ".join(f"c{i}" for i in range(len(columns)))
    places = ", ".join("(" + ", ".join("?" for _ in columns) + ")" for _ in rows)
    params = [values.get(c, _value(k, c, n)) for n, values in rows for c, k in columns]
    con.execute(
        f"INSERT INTO {table} ({names}) SELECT {casts} FROM (VALUES {places}) AS v({aliases})",
        params,
    )


def seal_as_intake(
    con: duckdb.DuckDBPyConnection, key: CheckpointSigner, checkpoint_dir: Path, run_id: str
) -> SealResult:
    """Seal every verdict and opinion as the intake that wrote them does (test set-up: rows
    added with `add_row` stand for rows intake wrote; every other seal refuses them)."""
    written = {}
    for event_type in INTAKE_OWNED.values():
        sql = source_sql(con, SOURCES_BY_TYPE[event_type])
        assert sql is not None
        written[event_type] = [k for (k,) in con.execute(
            f"SELECT {sql.entity_key} FROM {sql.table}").fetchall()]  # fmt: skip
    return intake_sealer(key, checkpoint_dir, None, run_id)(con, written)


def _first_run(con: duckdb.DuckDBPyConnection) -> None:
    cases = [(i, {"domain": DOMAIN, "case_id": f"C{i}"}) for i in range(1, 7)]
    add_rows(con, "decisions", [(i, case | {"route": "human_review"}) for i, case in cases])
    add_rows(con, "executions", [(i, case | {"action": "approve"}) for i, case in cases])
    add_rows(con, "verdicts", [(i, case | {"verdict": "approve"}) for i, case in cases[:3]])
    add_row(con, "verdict_opinions", 1, domain=DOMAIN, case_id="C1", reviewer_id="rev-a",
            stage="first", verdict="approve", four_eyes=True)  # fmt: skip
    add_row(con, "verdict_opinions", 2, domain=DOMAIN, case_id="C1", reviewer_id="rev-b",
            stage="second", verdict="approve", four_eyes=True)  # fmt: skip
    add_row(con, "verdict_opinions", 3, domain=DOMAIN, case_id="C2", reviewer_id="rev-a",
            stage="single", verdict="approve")  # fmt: skip
    add_row(con, "verdict_files", 1, file_sha256="f" * 64)
    add_row(con, "conflict_resolutions", 1, escalation_id=f"conflict:{DOMAIN}:C3",
            domain=DOMAIN, case_id="C3", verdict="decline")  # fmt: skip
    add_row(con, "reversal_requests", 1, domain=DOMAIN, case_id="C3")
    add_row(con, "adverse_actions", 1, domain=DOMAIN, case_id="C2")
    for seq in (1, 2):
        add_row(con, "policy_activations", seq, domain=DOMAIN, seq=seq, action="activate",
                activated_by="alice", approved_by="bob")  # fmt: skip
    add_row(con, "automation_halts", 1, domain=DOMAIN, seq=1, halted=True, actor="carol")
    add_row(con, "automation_halts", 2, domain=DOMAIN, seq=2, halted=False, actor="carol")
    add_row(con, "policy_shadows", 1, domain=DOMAIN, seq=1, action="set")
    add_row(con, "model_promotions", 1, model_name="pd", alias="champion", promoted_by="dan")
    add_row(con, "review_escalations", 1, escalation_id=f"sla_breach:{DOMAIN}:C4",
            domain=DOMAIN, case_id="C4")  # fmt: skip
    add_row(con, "escalation_batch_cases", 1, escalation_id=f"sla_breach:{DOMAIN}:C4",
            domain=DOMAIN, case_id="C4")  # fmt: skip
    add_row(con, "review_batch_closures", 1, batch_id="B1", domain=DOMAIN)
    add_row(con, "retention_actions", 1, domain=DOMAIN, kind="landing_file", target="/x/a.csv")
    add_row(con, "quarantine", 1, domain=DOMAIN, value="-42", row_number=7)


def build_tamper_home(root: Path) -> TamperHome:
    """Three sealed runs: the first seals every table, the next two add executions."""
    home = TamperHome(root)
    with audit_connection(blank_if_missing(home.db)) as con:
        _first_run(con)
        home.seal(con, "run-1")
        for run, cases in (("run-2", range(7, 10)), ("run-3", range(10, 13))):
            for i in cases:
                add_row(con, "executions", i, domain=DOMAIN, case_id=f"C{i}", action="decline")
            home.seal(con, run)
    return home


_BUILT: list[TamperHome] = []  # the one built by this test process, copied by `tamper_home_at`


def tamper_home_at(root: Path) -> TamperHome:
    """What `build_tamper_home(root)` makes, as a copy of the one built in this test process
    (each build seals three runs; a copy is a folder copy). Every copy has the same key. A
    test that must watch the build itself (a git witness committing each publication) builds
    its own."""
    if not _BUILT:
        folder = Path(tempfile.mkdtemp(prefix="hitl-gate-tamper-home-"))
        atexit.register(shutil.rmtree, folder, True)
        _BUILT.append(build_tamper_home(folder / "t"))
    return _BUILT[0].copy_to(root)
