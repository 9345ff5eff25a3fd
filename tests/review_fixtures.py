"""Shared builders for the review workspace tests: a small exported workspace and filled files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
from openpyxl import load_workbook

from hitl_gate.app.demo_reviewer import fill_demo_verdicts
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.review.export.batches import BatchExport, ReviewBatch, export_review_batches
from hitl_gate.review.intake.verdict_files import IntakeOutcome, ingest_verdict_file
from hitl_gate.review.settings import ReviewSettings, review_settings

CASE_ID = "application_id"
CREATED = datetime(2018, 3, 2, 9, 30, tzinfo=UTC)
IN_TIME = CREATED + timedelta(hours=1)
DAY = date(2018, 3, 1)
# Values that must never reach an analyst's file (annual income, job title, state).
RESTRICTED = {"annual_income": [52371.0, 87913.0, 61357.0, 45289.0, 150733.0, 98011.0, 73307.0]}
SECRET_TITLES = ["Quartermaster", "Zookeeper", "Xylophonist", "Wheelwright", "Vintner",
                 "Upholsterer", "Toxicologist"]  # fmt: skip
SECRET_STATES = ["CA", "NY", "TX", "CA", "WA", "OR", "NV"]


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

    def ingest(self, path: Path, now: datetime = IN_TIME) -> IntakeOutcome:
        from hitl_gate.core.database import audit_connection

        with audit_connection(self.db) as con:
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
            )

    def count(self, sql: str, params: list | None = None) -> int:
        from hitl_gate.core.database import audit_connection, scalar

        with audit_connection(self.db) as con:
            return int(scalar(con, sql, params or []))

    def fill(self, queue: str, name: str, reviewer: str, edits: dict | None = None) -> Path:
        """The batch of `queue` answered by the demo logic as `reviewer`, then `edits` applied."""
        path = fill_demo_verdicts(
            self.batches[queue].folder, self.inbox / name, reviewer_id=reviewer
        )
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


def edit_xlsx(path: Path, edits: dict[tuple[int, str], object]) -> None:
    """Set cells by (sheet row, column name), as a reviewer typing into Excel would."""
    workbook = load_workbook(path)
    sheet = workbook["cases"]
    column_of = {cell.value: cell.column for cell in sheet[1]}
    for (row, name), value in edits.items():
        sheet.cell(row, column_of[name]).value = value
    workbook.save(path)


def make_workspace(root: Path, key: bytes) -> Workspace:
    domain = load_domain("consumer_credit")
    settings = review_settings(domain)
    assert settings is not None
    batches = export_review_batches(
        review_cases(),
        BatchExport(
            domain=domain,
            batches_dir=root / "batches",
            key=key,
            partition_date=DAY,
            created_at=CREATED,
            context={"policy_version": "v1", "model_version": "3"},
            settings=settings,
        ),
    )
    return Workspace(root, domain, settings, key, {b.queue: b for b in batches})


def record_export(ws: Workspace) -> None:
    """What the daily run records: decisions of the day and the exported batches."""
    from hitl_gate.core.database import audit_connection

    with audit_connection(ws.db) as con:
        for case in review_cases()[CASE_ID]:
            con.execute(
                "INSERT INTO decisions (domain, case_id, partition_date, route, run_id, "
                "decided_at) VALUES ('consumer_credit', ?, ?, 'human_review', 'r', ?)",
                [case, DAY, CREATED],
            )
        for batch in ws.batches.values():
            con.execute(
                "INSERT INTO review_batches VALUES (?, 'consumer_credit', ?, ?, ?, ?, ?, ?, 'x', "
                "'r')",
                [batch.batch_id, DAY, batch.queue, str(batch.folder), len(batch.case_ids),
                 CREATED, batch.due_at],
            )  # fmt: skip
            for case in batch.case_ids:
                con.execute(
                    "INSERT INTO review_batch_cases VALUES (?, 'consumer_credit', ?)",
                    [batch.batch_id, case],
                )


def export_escalated(ws: Workspace, con: duckdb.DuckDBPyConnection, at: datetime) -> list:
    """The review loop's re-export of the day's open escalations as escalation batches."""
    from hitl_gate.review.intake.escalation import export_escalations

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
