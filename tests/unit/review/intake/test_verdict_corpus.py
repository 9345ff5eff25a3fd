"""The bad-verdict-file corpus: every way a returned file can be wrong, each refused clearly.

Each entry builds one or more returned files against a freshly exported workspace, ingests
them in order through the one intake path, and checks: the expected reason appears, the number
of final verdicts is exactly what the good rows allow, every file is recorded and archived
(nothing lost), and every rejection is stored (nothing silently dropped).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook

from hitl_gate.review.signing import sign
from tests.fixed_place import emptied
from tests.review_fixtures import CREATED, Workspace, edit_xlsx, make_workspace

pytestmark = pytest.mark.slow  # verdict files and registry acts signed by ssh-keygen

ANALYST, SENIOR = "credit_analyst", "senior_underwriter"
Build = Callable[[Workspace], list[Path]]


@dataclass(frozen=True)
class Bad:
    """One corpus entry: files to ingest in order, the reason expected, finals expected."""

    build: Build
    reason: str
    finals: int
    now_offset_hours: float = 1.0
    signer: str | None = None  # who signs (default: the person the file's typed id names)


def _analyst(ws: Workspace, edits: dict | None = None, reviewer: str = "analyst-7") -> list[Path]:
    return [ws.fill(ANALYST, "returned.xlsx", reviewer, edits)]


def _edit_manifest(ws: Workspace, change: Callable[[dict], None], key: bytes | None) -> None:
    path = ws.batches[ANALYST].folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    if key is not None:
        body = {k: v for k, v in manifest.items() if k != "signature"}
        manifest["signature"] = sign(body, key)
    path.write_text(json.dumps(manifest))


def _forged_manifest(ws: Workspace) -> list[Path]:
    files = _analyst(ws)
    _edit_manifest(ws, lambda m: m["case_ids"].append("APP-999"), key=None)
    return files


def _resigned_with_other_key(ws: Workspace) -> list[Path]:
    files = _analyst(ws)
    _edit_manifest(ws, lambda m: m.update(due_at="2099-01-01T00:00:00+00:00"), key=b"x" * 32)
    return files


def _all_batch_ids(ws: Workspace, value: str) -> list[Path]:
    edits = {(row, "batch_id"): value for row in range(2, 6)}
    return _analyst(ws, edits)


def _closed(ws: Workspace) -> list[Path]:
    ws.count("SELECT 1")  # creates the schema
    from hitl_gate.core.database import audit_connection

    with audit_connection(ws.db) as con:
        con.execute(
            "INSERT INTO review_batch_closures VALUES (?, ?, ?, ?)",
            [ws.batches[ANALYST].batch_id, "consumer_credit", "escalated after SLA", CREATED],
        )
    return _analyst(ws)


def _duplicate_row(ws: Workspace) -> list[Path]:
    path = ws.fill(ANALYST, "returned.xlsx", "analyst-7")
    workbook = load_workbook(path)
    sheet = workbook["cases"]
    sheet.append([cell.value for cell in sheet[2]])
    workbook.save(path)
    return [path]


def _same_file_twice(ws: Workspace) -> list[Path]:
    first = ws.fill(ANALYST, "a.xlsx", "analyst-7")
    second = ws.inbox / "b.xlsx"
    shutil.copy(first, second)
    return [first, second]


def _two_files_same_case(ws: Workspace) -> list[Path]:
    first = ws.fill(ANALYST, "a.xlsx", "analyst-7")
    second = ws.fill(ANALYST, "b.xlsx", "analyst-12", {(2, "rationale"): "second opinion"})
    return [first, second]


def _conflict(ws: Workspace) -> list[Path]:
    first = ws.fill(ANALYST, "a.xlsx", "analyst-7")
    second = ws.fill(
        ANALYST, "b.xlsx", "analyst-12", {(2, "verdict"): "decline", (2, "rationale"): "no"}
    )
    return [first, second]


def _truncated(ws: Workspace) -> list[Path]:
    path = ws.fill(ANALYST, "returned.xlsx", "analyst-7")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return [path]


def _write(ws: Workspace, name: str, data: bytes) -> list[Path]:
    ws.inbox.mkdir(parents=True, exist_ok=True)
    path = ws.inbox / name
    path.write_bytes(data)
    return [path]


def _missing_column(ws: Workspace) -> list[Path]:
    path = ws.fill(ANALYST, "returned.xlsx", "analyst-7")
    workbook = load_workbook(path)
    sheet = workbook["cases"]
    header = [c.value for c in sheet[1]]
    sheet.delete_cols(header.index("rationale") + 1)
    workbook.save(path)
    return [path]


def _renamed_sheet(ws: Workspace) -> list[Path]:
    path = ws.fill(ANALYST, "returned.xlsx", "analyst-7")
    workbook = load_workbook(path)
    workbook["cases"].title = "Sheet1"
    workbook.save(path)
    return [path]


def _split_batches(ws: Workspace) -> list[Path]:
    path = ws.fill(ANALYST, "returned.xlsx", "analyst-7")
    other = ws.batches[SENIOR].batch_id
    edit_xlsx(path, {(2, "batch_id"): other, (3, "batch_id"): other})
    return [path]


def _four_eyes_same_reviewer(ws: Workspace) -> list[Path]:
    first = ws.fill(SENIOR, "a.xlsx", "uw-ana")
    second = ws.fill(SENIOR, "b.xlsx", "uw-ana", {(2, "rationale"): "again"})
    return [first, second]


def _four_eyes_disagreement_then_peer(ws: Workspace) -> list[Path]:
    first = ws.fill(SENIOR, "a.xlsx", "uw-ana")
    flip = {(2, "verdict"): "decline", (2, "rationale"): "too large", (3, "verdict"): "decline"}
    flip[(3, "rationale")] = "too large"
    second = ws.fill(SENIOR, "b.xlsx", "uw-ben", flip)
    third = ws.fill(SENIOR, "c.xlsx", "analyst-12")  # an analyst cannot settle it
    return [first, second, third]


def _csv(answers: dict[int, dict[str, str]], queue: str = ANALYST) -> Build:
    return lambda ws: [ws.fill_csv(queue, "returned.csv", answers)]


def _ok(verdict: str = "approve", reviewer: str = "analyst-7", rationale: str = "fine") -> dict:
    return {"verdict": verdict, "reviewer_id": reviewer, "rationale": rationale}


# Analyst batch rows (sheet row: case, band, suggestion): 2 APP-001 B approve,
# 3 APP-000 D decline, 4 APP-002 E decline, 5 APP-003 C approve. Senior: 2 APP-004 (four eyes),
# 3 APP-005 (four eyes), 4 APP-006 (single, band E).
CORPUS: dict[str, Bad] = {
    "edited_context": Bad(lambda ws: _analyst(ws, {(2, "loan_amount"): 1.0}), "context", 3),
    "edited_masked_band": Bad(
        lambda ws: _analyst(ws, {(3, "annual_income"): "250,000"}), "context differs", 3
    ),
    "edited_pseudonym": Bad(lambda ws: _analyst(ws, {(4, "state"): "P-0"}), "locked column", 3),
    "edited_suggestion": Bad(
        lambda ws: _analyst(ws, {(3, "suggested_action"): "approve"}), "context differs", 3
    ),
    "forged_manifest": Bad(_forged_manifest, "manifest signature invalid", 0),
    "manifest_resigned_other_key": Bad(_resigned_with_other_key, "signature invalid", 0),
    "unknown_case": Bad(
        lambda ws: _analyst(ws, {(2, "application_id"): "APP-999"}), "not part of batch", 3
    ),
    "blank_case_id": Bad(
        lambda ws: _analyst(ws, {(2, "application_id"): None}), "case id is blank", 3
    ),
    "row_from_other_batch": Bad(
        lambda ws: _analyst(ws, {(2, "batch_id"): ws.batches[SENIOR].batch_id}),
        "row is from batch",
        3,
    ),
    "unknown_batch": Bad(
        lambda ws: _all_batch_ids(ws, "consumer_credit-20180301-x-001-deadbeef"),
        "unknown batch",
        0,
    ),
    "path_traversal_batch": Bad(lambda ws: _all_batch_ids(ws, "../../secrets"), "unknown", 0),
    "rows_split_between_batches": Bad(_split_batches, "split evenly", 0),
    "expired_batch": Bad(lambda ws: _analyst(ws), "expired", 0, now_offset_hours=48 + 24 + 1),
    "closed_batch": Bad(_closed, "is closed", 0),
    # Assigned the senior batch (by mistake) but without the senior role: refused whole.
    "unauthorised_reviewer": Bad(
        lambda ws: [ws.fill(SENIOR, "r.xlsx", "analyst-7")], "does not hold", 0
    ),
    # The typed id proves nothing: rows naming someone other than the signer are refused.
    "typed_id_of_someone_else": Bad(
        lambda ws: _analyst(ws, reviewer="mallory"), "is not the signer", 0, signer="analyst-7"
    ),
    # A blank typed id is fine: the signer is the reviewer.
    "blank_reviewer_id_is_the_signer": Bad(
        lambda ws: _analyst(ws, {(2, "reviewer_id"): None}), "", 4
    ),
    "missing_rationale_decline": Bad(
        lambda ws: _analyst(ws, {(3, "rationale"): None}), "rationale is required", 3
    ),
    "missing_rationale_override": Bad(
        lambda ws: _analyst(ws, {(3, "verdict"): "approve", (3, "rationale"): " "}),
        "overrides the suggested 'decline'",
        3,
    ),
    "invalid_verdict": Bad(lambda ws: _analyst(ws, {(2, "verdict"): "maybe"}), "one of", 3),
    "unknown_reason_code": Bad(
        lambda ws: _analyst(ws, {(3, "verdict_reason_code"): "R99"}), "unknown reason code", 3
    ),
    "duplicate_rows": Bad(_duplicate_row, "more than once", 3),
    "same_file_twice": Bad(_same_file_twice, "", 4),
    "two_files_same_case": Bad(_two_files_same_case, "first verdict stands", 4),
    "conflicting_late_verdict": Bad(_conflict, "recorded as a conflict", 4),
    "truncated_xlsx": Bad(_truncated, "unreadable", 0),
    "not_an_xlsx": Bad(lambda ws: _write(ws, "r.xlsx", b"PK\x03\x04 not a zip"), "unreadable", 0),
    "html_saved_as_xlsx": Bad(
        lambda ws: _write(ws, "r.xlsx", b"<html><table></table></html>"), "unreadable", 0
    ),
    "unsupported_type": Bad(lambda ws: _write(ws, "r.ods", b"whatever"), "unsupported", 0),
    "empty_csv": Bad(lambda ws: _write(ws, "r.csv", b""), "missing columns", 0),
    "binary_csv": Bad(lambda ws: _write(ws, "r.csv", b"\xff\xfe\x00\x81garbage"), "unreadable", 0),
    "missing_answer_column": Bad(_missing_column, "missing columns", 0),
    "no_cases_sheet": Bad(_renamed_sheet, "no 'cases' sheet", 0),
    "formula_in_verdict": Bad(
        lambda ws: _analyst(ws, {(2, "verdict"): '=IF(1,"approve","decline")'}),
        "formulas are not accepted",
        3,
    ),
    "formula_in_reviewer_csv": Bad(
        _csv({0: _ok(reviewer="=cmd|' /C calc'!A0")}), "is not the signer", 0
    ),
    "csv_edited_context": Bad(
        _csv({0: {**_ok(), "loan_amount": "99999"}, 3: _ok()}), "context differs", 1
    ),
    "four_eyes_same_reviewer": Bad(_four_eyes_same_reviewer, "another reviewer", 1),
    "four_eyes_disagreement_needs_escalation_role": Bad(
        _four_eyes_disagreement_then_peer, "does not hold", 1
    ),
}


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each case builds its workspace (`tests.fixed_place.emptied` first): one audit file
    path for the module's cases, so one kept DuckDB instance rather than one built per case."""
    return tmp_path_factory.mktemp("corpus-place") / "ws"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_file_is_refused_and_nothing_is_lost(place: Path, key: bytes, name: str) -> None:
    bad = CORPUS[name]
    ws = make_workspace(emptied(place), key)
    files = bad.build(ws)
    now = CREATED + timedelta(hours=bad.now_offset_hours)
    outcomes = [ws.ingest(path, now=now, signer=bad.signer) for path in files]

    messages = " | ".join(m for o in outcomes for m in o.messages)
    assert bad.reason in messages, f"{name}: expected {bad.reason!r} in {messages!r}"
    assert sum(o.accepted for o in outcomes) == bad.finals
    finals, distinct_finals, files_recorded, rejections = ws.counts(
        "SELECT count(*) FROM verdicts",
        "SELECT count(DISTINCT case_id) FROM verdicts",
        "SELECT count(*) FROM verdict_files",
        "SELECT count(*) FROM verdict_rejections",
    )  # one connection for the four
    assert finals == bad.finals
    assert distinct_finals == bad.finals
    # Nothing lost: every distinct file recorded once (or refused for who signed it, which is
    # kept as one rejection) and archived; every rejection stored.
    taken = {o.file_sha256 for o in outcomes if not o.identity_refused}
    refused = {o.file_sha256 for o in outcomes if o.identity_refused}
    assert files_recorded == len(taken)
    assert all(
        (ws.archive / f"{o.file_sha256}{Path(o.file_name).suffix}").exists() for o in outcomes
    )
    assert rejections == sum(o.rejected for o in outcomes) + len(refused)
    assert not any(path.exists() for path in files), "inbox entries must be cleared"


def test_rejections_are_reported_next_to_the_archived_file(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    outcome = ws.ingest(ws.fill(ANALYST, "r.xlsx", "analyst-7", {(2, "verdict"): "maybe"}))
    report = (ws.archive / f"{outcome.file_sha256}.errors.csv").read_text()
    assert "r.xlsx row 2, column 'verdict'" in report


def test_formula_text_in_rationale_is_neutralised_not_lost(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    path = ws.fill_csv(ANALYST, "r.csv", {0: _ok(rationale='=HYPERLINK("http://x","click")')})
    assert ws.ingest(path).accepted == 1
    from hitl_gate.core.database import audit_connection, scalar

    with audit_connection(ws.db) as con:
        stored = scalar(con, "SELECT rationale FROM verdicts")
    assert stored == '\'=HYPERLINK("http://x","click")'


def test_two_files_for_one_case_resolve_by_name_not_arrival(tmp_path: Path, key: bytes) -> None:
    winners = []
    for order in (("a.xlsx", "b.xlsx"), ("b.xlsx", "a.xlsx")):
        ws = make_workspace(tmp_path / "-".join(order), key)
        ws.fill(ANALYST, "a.xlsx", "analyst-7")
        ws.fill(ANALYST, "b.xlsx", "analyst-12")
        from hitl_gate.review.intake.received import pending_files

        for path in pending_files(ws.inbox):
            ws.ingest(path)
        from hitl_gate.core.database import audit_connection, query_frame

        with audit_connection(ws.db) as con:
            winners.append(set(query_frame(con, "SELECT reviewer_id FROM verdicts")["reviewer_id"]))
    assert winners == [{"analyst-7"}, {"analyst-7"}]


def test_four_eyes_agreement_finalises_and_disagreement_escalates(tmp_path: Path, key) -> None:
    ws = make_workspace(tmp_path, key)
    first = ws.ingest(ws.fill(SENIOR, "a.xlsx", "uw-ana"))
    assert (first.accepted, first.pending_second) == (1, 2)  # APP-006 single; two wait
    flip = {(3, "verdict"): "decline", (3, "rationale"): "income unverified"}
    second = ws.ingest(ws.fill(SENIOR, "b.xlsx", "uw-ben", flip))
    assert (second.accepted, second.escalated) == (1, 1)  # APP-004 agreed; APP-005 escalated
    assert ws.count("SELECT count(*) FROM verdicts WHERE case_id = 'APP-005'") == 0
    assert (
        ws.count(
            "SELECT count(*) FROM review_escalations WHERE kind = 'four_eyes_disagreement' "
            "AND escalate_to = 'compliance_review' AND resolved_at IS NULL"
        )
        == 1
    )
    third = ws.ingest(ws.fill(SENIOR, "c.xlsx", "comp-chen"))
    assert third.accepted == 1  # compliance settles APP-005; the rest are already final
    assert ws.count("SELECT count(*) FROM verdicts") == 3
    assert ws.count("SELECT count(*) FROM review_escalations WHERE resolved_at IS NULL") == 0
    assert ws.count("SELECT count(*) FROM verdict_opinions") == 3 + 2 + 1
