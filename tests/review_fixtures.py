"""Shared builders for the review workspace tests: a small exported workspace and filled files.

Every returned file is signed, as in production: `Workspace.ingest` registers the person named
by the file's typed `reviewer_id` (with a real ssh-keygen key, and the role `ROLES` gives them),
makes them the batch's current assignee, signs the file with their key, then takes it in.
Identity tests pass `sign=False` or their own `signer` and assignment to attack that path.
"""

from __future__ import annotations

import atexit
import csv
import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from openpyxl import load_workbook

from hitl_gate.app.demo_reviewer import fill_demo_verdicts
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.identity.signatures import VERDICTS
from hitl_gate.review.export.batches import (
    XLSX_NAME,
    BatchExport,
    ReviewBatch,
    export_review_batches,
)
from hitl_gate.review.intake.verdict_files import IntakeOutcome, ingest_verdict_file
from hitl_gate.review.manifest import MANIFEST_NAME
from hitl_gate.review.settings import ReviewSettings, review_settings
from tests.blank_audit_db import blank_if_missing
from tests.identity_fixtures import add_person, bootstrap
from tests.key_pool import PooledKeyring, pooled_keyring

CASE_ID = "application_id"
CREATED = datetime(2018, 3, 2, 9, 30, tzinfo=UTC)
IN_TIME = CREATED + timedelta(hours=1)
DAY = date(2018, 3, 1)
# Values that must never reach an analyst's file (annual income, job title, state).
RESTRICTED = {"annual_income": [52371.0, 87913.0, 61357.0, 45289.0, 150733.0, 98011.0, 73307.0]}
SECRET_TITLES = ["Quartermaster", "Zookeeper", "Xylophonist", "Wheelwright", "Vintner",
                 "Upholsterer", "Toxicologist"]  # fmt: skip
SECRET_STATES = ["CA", "NY", "TX", "CA", "WA", "OR", "NV"]
REGISTERED_AT = datetime(2018, 1, 1, tzinfo=UTC)  # registry acts happen before the batches
DEFAULT_SIGNER = "analyst-7"  # signs files in which no person id is typed (junk, blank ids)
# The test people and the role each holds in consumer_credit (what review.yaml listed before
# identities moved to the registry).
ROLES = {
    "analyst-7": "analyst",
    "analyst-12": "analyst",
    "demo-reviewer": "analyst",
    "uw-ana": "senior_underwriter",
    "uw-ben": "senior_underwriter",
    "comp-chen": "compliance",
}


def review_cases() -> pl.DataFrame:
    """Four analyst cases (bands D, B, E, C) and three senior cases, two of them four-eyes."""
    n = 7
    return pl.DataFrame(
        {
            CASE_ID: [f"APP-{i:03d}" for i in range(n)],
            "application_time": [datetime(2018, 3, 1, 8 + i, 15) for i in range(n)],
            "loan_amount": [1000.0, 2500.5, 12000.0, 8000.0, 40000.0, 36000.0, 27000.0],
            "term": [36, 60, 36, 36, 60, 36, 60],
            "loan_purpose": ["car", '=HYPERLINK("x")', "house", "other", "car", "car", "car"],
            "annual_income": RESTRICTED["annual_income"],
            "debt_to_income": [12.5, None, 30.25, 18.0, 22.0, 10.0, 45.0],
            "homeownership": ["RENT", "OWN", "MORTGAGE", "RENT", "RENT", "OWN", "RENT"],
            "delinq_2y": [0, 1, 0, 2, 0, 0, 3],
            "inquiries_last_12m": [1, 0, 4, 2, 7, 1, 0],
            "grade": ["B", "C", "D", "E", "A", "B", "F"],
            "emp_title": SECRET_TITLES,
            "state": SECRET_STATES,
            "review_queue": ["credit_analyst"] * 4 + ["senior_underwriter"] * 3,
            "review_priority": [2, 1, 2, 3, 1, 1, 2],
            "four_eyes": [False] * 4 + [True, True, False],
            "route_reason_code": ["H07", "H08", "H07", "H08", "H01", "H01", "H02"],
            "rules_fired": [["REV-BAND-D"], ["REV-BAND-C"], [], None, ["REV-AMOUNT-35K"], [], []],
            "reason_texts": [
                ["Existing debt is high relative to income"],
                [],
                [],
                None,
                [],
                [],
                [],
            ],
            "pd": [0.05, 0.015, 0.2, 0.03, 0.01, 0.012, 0.09],
            "score": [610, 650, 520, 630, 700, 690, 560],
            "risk_band": ["D", "B", "E", "C", "A", "B", "E"],
        }
    )


@dataclass
class Workspace:
    """An exported review workspace in a temp folder, with its audit database."""

    root: Path
    domain: DomainConfig
    settings: ReviewSettings
    key: bytes
    batches: dict[str, ReviewBatch]  # by queue
    keyring: PooledKeyring | None = None
    # Who `register_on` found or put in this workspace's registry. People are never removed
    # from a registry (a revoked person stays in it), so someone listed here needs no DuckDB
    # open to be found again (tens of milliseconds of CPU each); a copy of the workspace
    # (`portal_fixtures._copy_world`) gets a copy of the set with the database.
    registered: set[str] = field(default_factory=set)
    # The audit file as `make_workspace` placed it (`_file_stamp`), until the first `ingest`:
    # while the file still is that blank copy, the ingest's set-up is a copy too
    # (`_set_up_from_template`). None: the file may have changed, always set up by SQL.
    blank_stamp: tuple[int, int, int] | None = None

    @property
    def keys(self) -> PooledKeyring:
        if self.keyring is None:
            self.keyring = pooled_keyring(self.root / "keys")
        return self.keyring

    @property
    def batches_dir(self) -> Path:
        return self.root / "batches"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def db(self) -> Path:
        return self.root / "audit.duckdb"

    def person(self, person_id: str, grants: list[str] | None = None) -> None:
        """Register `person_id` (once) with their own key and the grants given (default: the
        role `ROLES` gives them in consumer_credit)."""
        from hitl_gate.core.database import audit_connection

        if person_id in self.registered:
            return
        with audit_connection(self.db) as con:
            self.register_on(con, person_id, grants)

    def register_on(
        self, con: duckdb.DuckDBPyConnection, person_id: str, grants: list[str] | None = None
    ) -> None:
        """`person`, on a connection the caller already holds."""
        from hitl_gate.identity.store import load_registry

        if person_id in self.registered:
            return
        registry = load_registry(con)
        if not registry.acts:
            registry = bootstrap(con, self.keys, at=REGISTERED_AT)
        if person_id not in registry.people:
            role = ROLES.get(person_id, "analyst")
            own = grants if grants is not None else [f"consumer_credit:{role}"]
            registry = add_person(con, self.keys, person_id, own, at=REGISTERED_AT)
        self.registered.update(registry.people)

    def assign(self, batch_id: str, person_id: str, slot: int = 0) -> None:
        """Make `person_id` the batch's current assignee (a new row only when it changes)."""
        from hitl_gate.core.database import audit_connection

        with audit_connection(self.db) as con:
            record_batches_on(self, con)
            self.assign_on(con, batch_id, person_id, slot)

    def person_assigned(self, person_id: str, batch_id: str) -> None:
        """`person` then `assign`, on one connection (registered with their `ROLES` role)."""
        from hitl_gate.core.database import audit_connection

        copied_in = self._set_up_from_template(person_id, batch_id)
        if copied_in == self.root:
            return  # the copy is this set-up, its batch folders already this workspace's
        with audit_connection(self.db) as con:
            if copied_in is not None:
                _moved_batch_folders(self, con)
                return
            self.register_on(con, person_id)
            record_batches_on(self, con)
            self.assign_on(con, batch_id, person_id)

    def assign_on(
        self, con: duckdb.DuckDBPyConnection, batch_id: str, person_id: str, slot: int = 0
    ) -> None:
        """`assign`, on a connection the caller already holds (batches recorded)."""
        from hitl_gate.review.assignments import current_assignee

        current = current_assignee(con, batch_id)
        if current is not None and current.assignee_id == person_id:
            return
        queue = con.execute(
            "SELECT queue FROM review_all_batches WHERE batch_id = ?", [batch_id]
        ).fetchone()
        con.execute(
            "INSERT INTO review_assignments (batch_id, seq, domain, queue, assignee_id, "
            "opinion_slot, assigned_by, recorded_at) VALUES (?, ?, 'consumer_credit', ?, ?, "
            "?, 'test', ?)",
            [batch_id, (current.seq + 1) if current else 1, queue[0] if queue else "?",
             person_id, slot, CREATED],
        )  # fmt: skip

    def sign(self, path: Path, person_id: str) -> Path:
        """`path.sig` made with `person_id`'s key (registered first)."""
        self.person(person_id)
        return self.keys.sign_file(path, person_id, VERDICTS)

    def sign_as(self, path: Path, person_id: str, batch_id: str | None) -> Path:
        """`path.sig` made with `person_id`'s key, once they are registered, the batches are
        recorded and (a `batch_id` given) they are its assignee: all on one connection, since
        each DuckDB open and checkpoint costs tens of milliseconds of CPU."""
        from hitl_gate.core.database import audit_connection

        copied_in = self._set_up_from_template(person_id, batch_id)
        if copied_in != self.root:
            with audit_connection(self.db) as con:
                if copied_in is None:
                    return self.sign_as_on(con, path, person_id, batch_id)
                _moved_batch_folders(self, con)
        return self.keys.sign_file(path, person_id, VERDICTS)

    def sign_as_on(
        self, con: duckdb.DuckDBPyConnection, path: Path, person_id: str, batch_id: str | None
    ) -> Path:
        """`sign_as`, on a connection the caller already holds."""
        self.register_on(con, person_id)
        record_batches_on(self, con)
        if batch_id is not None:
            self.assign_on(con, batch_id, person_id)
        return self.keys.sign_file(path, person_id, VERDICTS)

    def ingest(
        self,
        path: Path,
        now: datetime = IN_TIME,
        *,
        signer: str | None = None,
        sign: bool = True,
        assign: bool = True,
        name: str | None = None,
    ) -> IntakeOutcome:
        """Take `path` in as intake does. By default it is signed by `signer` (else the person
        its first typed reviewer_id names) who is first made the batch's assignee. The set-up
        (registry, batches, assignment) commits on the intake's connection before intake
        starts: one DuckDB open instead of two."""
        from hitl_gate.core.database import audit_connection

        typed = (  # the file read once for both, and only when either is needed
            _typed_columns(path, ("reviewer_id", "batch_id")) if sign or not signer else None
        )
        who = signer or typed_reviewer(path, typed) or DEFAULT_SIGNER
        assigned: str | None = None
        if sign:
            batch_id = typed_batch(path, typed)
            known = batch_id in {b.batch_id for b in self.batches.values()}
            assigned = batch_id if assign and known else None
        copied_in = self._set_up_from_template(who, assigned) if sign else None
        with audit_connection(self.db) as con:
            if copied_in is not None:
                if copied_in != self.root:
                    _moved_batch_folders(self, con)
                self.keys.sign_file(path, who, VERDICTS)
            elif sign:
                self.sign_as_on(con, path, who, assigned)
            else:
                record_batches_on(self, con)
            return ingest_verdict_file(
                con,
                path,
                domain=self.domain,
                batches_dir=self.batches_dir,
                archive_dir=self.archive,
                key=self.key,
                run_id="test",
                settings=self.settings,
                now=now,
                name=name,
            )

    def _set_up_from_template(self, who: str, batch_id: str | None) -> Path | None:
        """When the audit file is still the blank copy `make_workspace` placed: make it what
        `sign_as_on(who, batch_id)` makes of a blank file (the registry's administrator and
        `who` with their `ROLES` role, the batches recorded, `who` the batch's assignee) by
        copying that file, made once per test process by the same SQL. Returns the root of the
        workspace whose batch folders the copy names (this one's: nothing more to do; another:
        `_moved_batch_folders`), or None when nothing was done.

        The file is the same rows the SQL writes (the same pooled keys sign the same acts at
        `REGISTERED_AT`), some 60 ms of CPU cheaper per workspace. None, with nothing done,
        once anything may have written to the file: the caller then sets up by SQL as before.
        """
        stamp, self.blank_stamp = self.blank_stamp, None  # only ever the first set-up
        if stamp is None or _file_stamp(self.db) != stamp:
            return None
        shape = tuple(
            (b.batch_id, b.queue, b.case_ids, b.due_at, b.folder.relative_to(self.root))
            for b in sorted(self.batches.values(), key=lambda b: b.batch_id)
        )
        memo = (self.key, shape, who, ROLES.get(who), batch_id)
        made = _SET_UP.get(memo)
        if made is None:
            from hitl_gate.core.database import audit_connection

            with audit_connection(self.db) as con:
                self.register_on(con, who)
                record_batches_on(self, con)
                if batch_id is not None:
                    self.assign_on(con, batch_id, who)
            if _file_stamp(self.db) is not None:  # no log beside it: the file is the set-up
                if len(_SET_UP) >= EXPORTED_LIMIT:
                    _SET_UP.clear()
                _SET_UP[memo] = (self.db.read_bytes(), frozenset(self.registered), self.root)
            return self.root
        data, people, root = made
        staged = self.db.with_name(f".{self.db.name}.set-up")
        staged.write_bytes(data)
        staged.replace(self.db)
        self.registered.update(people)
        return root

    def count(self, sql: str, params: list | None = None) -> int:
        from hitl_gate.core.database import audit_connection, scalar

        with audit_connection(self.db) as con:
            return int(scalar(con, sql, params or []))

    def counts(self, *sqls: str | tuple[str, list]) -> list[int]:
        """`count` of each statement (a text, or a text and its parameters), all on one
        connection: each DuckDB open and checkpoint costs tens of milliseconds of CPU."""
        from hitl_gate.core.database import audit_connection, scalar

        statements = [(sql, []) if isinstance(sql, str) else sql for sql in sqls]
        with audit_connection(self.db) as con:
            return [int(scalar(con, sql, params)) for sql, params in statements]

    def fill(self, queue: str, name: str, reviewer: str, edits: dict | None = None) -> Path:
        """The batch of `queue` answered by the demo logic as `reviewer`, then `edits` applied."""
        path = filled(self.batches[queue].folder, self.inbox / name, reviewer)
        if edits:
            edit_xlsx(path, edits)
        return path

    def fill_csv(self, queue: str, name: str, answers: dict[int, dict[str, str]]) -> Path:
        """The batch's CSV with `answers` (by data row index, 0-based) typed in."""
        source = self.batches[queue].folder / "cases.csv"
        with source.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        header = rows[0]
        for index, values in answers.items():
            for column, value in values.items():
                rows[index + 1][header.index(column)] = value
        self.inbox.mkdir(parents=True, exist_ok=True)
        path = self.inbox / name
        with path.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows(rows)
        return path


def filled(batch_folder: Path, out_path: Path, reviewer: str) -> Path:
    """`fill_demo_verdicts(batch_folder, out_path, reviewer_id=reviewer)`, remembered per test
    process by the batch's workbook and manifest bytes (all it reads): the same batch answered
    by the same reviewer is the same answers, so later calls copy the first file's bytes."""
    memo = (
        hashlib.sha256((batch_folder / XLSX_NAME).read_bytes()).hexdigest(),
        hashlib.sha256((batch_folder / MANIFEST_NAME).read_bytes()).hexdigest(),
        reviewer,
    )
    data = _FILLED.get(memo)
    if data is None:
        fill_demo_verdicts(batch_folder, out_path, reviewer_id=reviewer)
        if len(_FILLED) >= FILLED_LIMIT:
            _FILLED.clear()
        _FILLED[memo] = out_path.read_bytes()
    else:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(data)
    return out_path


_FILLED: dict[tuple[str, str, str], bytes] = {}  # `filled`'s files, by what they were made of
FILLED_LIMIT = 64


def _typed_columns(path: Path, columns: tuple[str, ...]) -> dict[str, list[str]]:
    """The non-blank values typed in each of `columns` of a returned file ([] for a column
    missing or a file unreadable), the file read once.

    Remembered per test process by the file's bytes, as `filled` is: most returned files are
    the same few workbooks, and opening one with openpyxl costs tens of milliseconds."""
    try:
        data = path.read_bytes()
    except OSError:
        return _read_typed_columns(path, columns)  # as the file reader answers for it
    memo = (hashlib.sha256(data).hexdigest(), path.suffix.lower(), columns)
    typed = _TYPED.get(memo)
    if typed is None:
        if len(_TYPED) >= FILLED_LIMIT:
            _TYPED.clear()
        typed = _TYPED[memo] = _read_typed_columns(path, columns)
    return {column: list(values) for column, values in typed.items()}


# `_typed_columns`' answers, by the file's bytes, its suffix and the columns asked for
_TYPED: dict[tuple[str, str, tuple[str, ...]], dict[str, list[str]]] = {}


def _read_typed_columns(path: Path, columns: tuple[str, ...]) -> dict[str, list[str]]:
    """`_typed_columns`, read from the file."""
    nothing: dict[str, list[str]] = {column: [] for column in columns}
    if path.suffix.lower() == ".csv":
        try:
            with path.open(encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (UnicodeDecodeError, csv.Error):
            return nothing
        values = {column: [row.get(column) for row in rows] for column in columns}
    else:
        try:
            sheet = load_workbook(path, read_only=True)["cases"]
            table = list(sheet.iter_rows(values_only=True))
        except Exception:  # noqa: BLE001 - not a workbook: nothing typed
            return nothing
        if not table:
            return nothing
        header = list(table[0])
        values = {}
        for column in columns:
            if column not in header:
                values[column] = []
                continue
            index = header.index(column)
            values[column] = [row[index] if index < len(row) else None for row in table[1:]]
    return {
        column: [str(v).strip() for v in typed if v is not None and str(v).strip()]
        for column, typed in values.items()
    }


def typed_reviewer(path: Path, typed: dict[str, list[str]] | None = None) -> str | None:
    """The first typed `reviewer_id` that could be a person id (None: none); `typed`: the
    file's columns already read (`_typed_columns`)."""
    from hitl_gate.identity.registry import PERSON_ID

    typed = typed or _typed_columns(path, ("reviewer_id",))
    ids = [v for v in typed["reviewer_id"] if PERSON_ID.fullmatch(v)]
    return ids[0] if ids else None


def typed_batch(path: Path, typed: dict[str, list[str]] | None = None) -> str | None:
    """The batch most rows of a returned file name (as intake decides it)."""
    batches = (typed or _typed_columns(path, ("batch_id",)))["batch_id"]
    return max(sorted(set(batches)), key=batches.count) if batches else None


def record_batches(ws: Workspace) -> None:
    """The exported batches as the export records them (once per batch)."""
    from hitl_gate.core.database import audit_connection

    with audit_connection(ws.db) as con:
        record_batches_on(ws, con)


def record_batches_on(ws: Workspace, con: duckdb.DuckDBPyConnection) -> None:
    """`record_batches`, on a connection the caller already holds."""
    recorded = {r[0] for r in con.execute("SELECT batch_id FROM review_batches").fetchall()}
    for batch in ws.batches.values():
        if batch.batch_id in recorded:
            continue  # a test may have changed its rows on purpose
        con.execute(
            "INSERT OR IGNORE INTO review_batches VALUES (?, 'consumer_credit', ?, ?, ?, ?, "
            "?, ?, 'x', 'r')",
            [batch.batch_id, DAY, batch.queue, str(batch.folder), len(batch.case_ids),
             CREATED, batch.due_at],
        )  # fmt: skip
        con.execute(  # one statement: DuckDB's executemany runs one per row (~2 ms each)
            "INSERT OR IGNORE INTO review_batch_cases "
            "SELECT ?, 'consumer_credit', unnest(?::VARCHAR[])",
            [batch.batch_id, list(batch.case_ids)],
        )


def edit_xlsx(path: Path, edits: dict[tuple[int, str], object]) -> None:
    """Set cells by (sheet row, column name), as a reviewer typing into Excel would.

    Remembered per test process by the file's bytes and the edits (their `repr`: plain
    values), as `filled` is: the same edits of the same file give the same workbook."""
    memo = (hashlib.sha256(path.read_bytes()).hexdigest(), repr(sorted(edits.items())))
    data = _EDITED.get(memo)
    if data is not None:
        path.write_bytes(data)
        return
    workbook = load_workbook(path)
    sheet = workbook["cases"]
    column_of = {cell.value: cell.column for cell in sheet[1]}
    for (row, name), value in edits.items():
        sheet.cell(row, column_of[name]).value = value
    workbook.save(path)
    if len(_EDITED) >= FILLED_LIMIT:
        _EDITED.clear()
    _EDITED[memo] = path.read_bytes()


_EDITED: dict[tuple[str, str], bytes] = {}  # `edit_xlsx`'s files, by what they were made of


def batch_export(domain: DomainConfig, batches_dir: Path, key: bytes, **more: Any) -> BatchExport:
    """The tests' export of `DAY` at `CREATED` (policy v1, model 3) into `batches_dir`; `more`
    adds or replaces fields (settings, assigner, context...)."""
    fields: dict[str, Any] = {
        "partition_date": DAY,
        "created_at": CREATED,
        "context": {"policy_version": "v1", "model_version": "3"},
        **more,
    }
    return BatchExport(domain=domain, batches_dir=batches_dir, key=key, **fields)


def make_workspace(root: Path, key: bytes) -> Workspace:
    """Seven cases exported into `root`, beside a blank audit database (schema only: what the
    workspace's first writer would create, copied instead of built, `tests.blank_audit_db`).

    The export writes the same bytes for the same key wherever it writes them (batch ids come
    from the cases, and no file names its folder), so it runs once per key and test process
    (the review tests' `key` is one per process, `tests/unit/review/conftest.py`) and every
    workspace gets a copy of the batches in its own folder.
    """
    domain = load_domain("consumer_credit")
    settings = review_settings(domain)
    assert settings is not None
    exported = _EXPORTED.get(key)
    if exported is None:
        if len(_EXPORTED) >= EXPORTED_LIMIT:
            _EXPORTED.clear()
        folder = Path(tempfile.mkdtemp(prefix="hitl-gate-review-export-"))
        atexit.register(shutil.rmtree, folder, True)
        export = batch_export(domain, folder / "batches", key, settings=settings)
        exported = _EXPORTED[key] = (folder, export_review_batches(review_cases(), export))
    source, batches = exported
    shutil.copytree(source / "batches", root / "batches", symlinks=True, dirs_exist_ok=True)
    copies = [replace(b, folder=root / b.folder.relative_to(source)) for b in batches]
    workspace = Workspace(root, domain, settings, key, {b.queue: b for b in copies})
    blank_if_missing(workspace.db)
    workspace.blank_stamp = _file_stamp(workspace.db)
    return workspace


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """The file's inode, size and change time (None: missing, or a DuckDB log beside it)."""
    if Path(f"{path}.wal").exists():
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


# The audit file after `Workspace._set_up_from_template`'s set-up, who its registry holds and
# the root of the workspace it was made in, by what made it (the review key, the batches, the
# signer, their role, the batch assigned).
_SET_UP: dict[tuple[object, ...], tuple[bytes, frozenset[str], Path]] = {}


def _moved_batch_folders(ws: Workspace, con: duckdb.DuckDBPyConnection) -> None:
    """The recorded batches' folders made this workspace's (a copied audit file names the
    folders of the workspace it was made in, as `portal_fixtures._copy_world` moves them)."""
    batches = list(ws.batches.values())
    con.execute(
        "UPDATE review_batches SET folder = m.folder FROM (SELECT unnest(?::VARCHAR[]) AS "
        "batch_id, unnest(?::VARCHAR[]) AS folder) m WHERE review_batches.batch_id = m.batch_id "
        "AND review_batches.folder <> m.folder",
        [[b.batch_id for b in batches], [str(b.folder) for b in batches]],
    )


# The exported batches by review key, once per test process (`make_workspace`).
_EXPORTED: dict[bytes, tuple[Path, list[ReviewBatch]]] = {}
EXPORTED_LIMIT = 8


def record_export(ws: Workspace) -> None:
    """What the daily run records: decisions of the day and the exported batches."""
    from hitl_gate.core.database import audit_connection

    with audit_connection(ws.db) as con:
        con.execute(  # one statement, not one per case (`record_batches_on`)
            "INSERT OR IGNORE INTO decisions (domain, case_id, partition_date, route, "
            "run_id, decided_at) SELECT 'consumer_credit', unnest(?::VARCHAR[]), ?, "
            "'human_review', 'r', ?",
            [review_cases()[CASE_ID].to_list(), DAY, CREATED],
        )
        record_batches_on(ws, con)


def export_escalated(ws: Workspace, con: duckdb.DuckDBPyConnection, at: datetime) -> list:
    """The review loop's re-export of the day's open escalations as escalation batches."""
    from hitl_gate.review.intake.escalation import export_escalations

    for person_id in ROLES:  # escalations are assigned to the people of the escalation roles
        ws.register_on(con, person_id)
    return export_escalations(
        con,
        review_cases(),
        BatchExport(
            domain=ws.domain,
            settings=ws.settings,
            batches_dir=ws.batches_dir,
            key=ws.key,
            partition_date=DAY,
            created_at=at,
            context={"policy_version": "v1", "model_version": "3"},
            rule_texts={},
        ),
        run_id="escalate",
    )
