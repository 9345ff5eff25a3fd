"""Hostile returned files on the verdict side (issue 19): floods, caps, inbox names, batch and
case mismatches, look-alike ids, and messages that stay true. Each with its expected outcome."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.database import audit_connection
from hitl_gate.review.intake.limits import IntakeLimits
from hitl_gate.review.intake.received import pending_files, receive_file, shown_name
from hitl_gate.review.intake.verdict_files import ingest_verdict_file
from tests.fixed_place import emptied
from tests.review_fixtures import CREATED, IN_TIME, Workspace, make_workspace

pytestmark = pytest.mark.slow  # verdict files and registry acts signed by ssh-keygen

ANALYST, SENIOR = "credit_analyst", "senior_underwriter"


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each test builds its workspace (`tests.fixed_place.emptied` first): one audit file
    path for the module's tests, so one kept DuckDB instance rather than one built per test."""
    return tmp_path_factory.mktemp("hostile-place") / "ws"


def _ingest(ws: Workspace, path: Path, limits: IntakeLimits, signer: str = "analyst-7"):
    """Sign as `signer` (assigned the analyst batch), then take in with `limits`."""
    ws.person_assigned(signer, ws.batches[ANALYST].batch_id)
    ws.sign(path, signer)
    with audit_connection(ws.db) as con:
        return ingest_verdict_file(
            con, path, domain=ws.domain, batches_dir=ws.batches_dir, archive_dir=ws.archive,
            key=ws.key, run_id="t", settings=ws.settings, now=IN_TIME, limits=limits,
        )  # fmt: skip


def _junk_flood(ws: Workspace, rows: int) -> Path:
    """The analyst batch's CSV with `rows` junk rows appended (random case ids, verdicts)."""
    source = pl.read_csv(ws.batches[ANALYST].folder / "cases.csv", infer_schema=False)
    junk = pl.DataFrame(
        {name: [None] * rows for name in source.columns}, schema=source.schema
    ).with_columns(
        batch_id=pl.lit(ws.batches[ANALYST].batch_id),
        application_id=pl.format("JUNK-{}", pl.int_range(rows)),
        verdict=pl.lit("approve"),
        rationale=pl.lit("x" * 100),
    )
    path = ws.inbox / "flood.csv"
    ws.inbox.mkdir(parents=True, exist_ok=True)
    pl.concat([source, junk]).write_csv(path)
    return path


def test_a_flood_of_junk_rows_costs_seconds_and_bounded_records(place: Path, key) -> None:
    ws = make_workspace(emptied(place), key)
    path = _junk_flood(ws, 150_000)
    assert path.stat().st_size > 15_000_000
    started = time.perf_counter()
    outcome = _ingest(ws, path, IntakeLimits(stored_rejections=50, messages=10))
    elapsed = time.perf_counter() - started
    assert elapsed < 30, elapsed  # seconds, not the 11 minutes of a per-row audit trail
    assert outcome.rejected == 150_000 and outcome.accepted == 0
    assert ws.count("SELECT count(*) FROM verdict_rejections") == 51  # 50 + one summary
    assert "150,000" not in " ".join(outcome.messages[:10])
    assert len(outcome.messages) == 11  # the Dagster log gets at most 10 + one line
    assert ws.count("SELECT rows_rejected FROM verdict_files") == 150_000  # counted in full
    summary = ws.count(
        "SELECT count(*) FROM verdict_rejections WHERE message LIKE '%149,950 more refused rows%'"
    )
    assert summary == 1


def test_a_file_over_the_size_cap_is_refused_unread_with_one_error(place: Path, key) -> None:
    ws = make_workspace(emptied(place), key)
    path = _junk_flood(ws, 20_000)
    outcome = _ingest(ws, path, IntakeLimits(max_bytes=1_000_000))
    assert outcome.accepted == 0 and outcome.refused
    assert outcome.messages == (outcome.error,) and "cap for a verdict file" in outcome.error
    assert ws.count("SELECT count(*) FROM verdict_rejections") == 0
    assert ws.count("SELECT count(*) FROM verdict_files WHERE error LIKE '%cap%'") == 1


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_file_over_the_row_cap_is_refused_with_one_error(place: Path, key, suffix) -> None:
    ws = make_workspace(emptied(place), key)
    if suffix == ".csv":
        path = _junk_flood(ws, 500)
    else:
        from openpyxl import load_workbook

        path = ws.fill(ANALYST, "flood.xlsx", "analyst-7")
        workbook = load_workbook(path)
        sheet = workbook["cases"]
        row = [c.value for c in sheet[2]]  # read once: each `sheet[2]` scans every cell
        for _ in range(500):
            sheet.append(row)
        workbook.save(path)
    outcome = _ingest(ws, path, IntakeLimits(max_rows=100))
    assert outcome.accepted == 0 and outcome.rejected == 0
    assert "more than 100 rows" in (outcome.error or "")
    assert ws.count("SELECT count(*) FROM verdict_rejections") == 0


def test_two_reviewers_cases_xlsx_are_both_kept_and_both_taken_in(place: Path, key) -> None:
    ws = make_workspace(emptied(place), key)
    analyst = ws.fill(ANALYST, "out/a/cases.xlsx", "analyst-7")
    senior = ws.fill(SENIOR, "out/b/cases.xlsx", "uw-ana")
    for path, person, queue in ((analyst, "analyst-7", ANALYST), (senior, "uw-ana", SENIOR)):
        ws.person_assigned(person, ws.batches[queue].batch_id)
        ws.sign(path, person)
    inbox = ws.root / "inbox2"
    stored = [receive_file(analyst, inbox), receive_file(senior, inbox)]
    assert stored[0] != stored[1] and {p.name for p in stored} == {"cases.xlsx"}
    assert all(p.with_name("cases.xlsx.sig").exists() for p in stored)
    waiting = pending_files(inbox)
    assert waiting == sorted(stored, key=lambda p: p.relative_to(inbox).as_posix())
    outcomes = [ws.ingest(p, sign=False, name=shown_name(inbox, p)) for p in waiting]
    assert sorted(o.accepted for o in outcomes) == [1, 4]  # senior: APP-006; two wait
    assert {o.file_name for o in outcomes} == {"cases.xlsx"}
    assert ws.count("SELECT count(*) FROM verdict_files") == 2
    assert not any(inbox.iterdir()), "hash folders are removed once taken in"


def test_reviewers_drop_folders_are_read_and_named(place: Path, key) -> None:
    ws = make_workspace(emptied(place), key)
    ws.inbox.mkdir(parents=True, exist_ok=True)
    for folder in ("ana", "ben"):
        (ws.inbox / folder).mkdir()
        (ws.inbox / folder / "cases.xlsx").write_bytes(b"x")
    (ws.inbox / "ana" / "~$cases.xlsx").write_bytes(b"lock")  # Office's lock file
    (ws.inbox / ".hidden.csv").write_bytes(b"x")
    (ws.inbox / "x\nFAKE LOG LINE.csv").write_bytes(b"x")
    names = [shown_name(ws.inbox, p) for p in pending_files(ws.inbox)]
    assert names == ["ana/cases.xlsx", "ben/cases.xlsx", "x\\nFAKE LOG LINE.csv"]


def test_a_case_not_recorded_in_the_batch_is_refused(place: Path, key) -> None:
    """Half-exported batch: the manifest lists the case, the database does not hold it as a
    member of that batch; the verdict is matched by (batch, case) and refused."""
    ws = make_workspace(emptied(place), key)
    path = ws.fill(ANALYST, "r.xlsx", "analyst-7")
    ws.person_assigned("analyst-7", ws.batches[ANALYST].batch_id)
    ws.count("DELETE FROM review_batch_cases WHERE case_id = 'APP-001'")
    outcome = ws.ingest(path)
    assert outcome.accepted == 3 and outcome.rejected == 1
    assert "APP-001 is not recorded as a member of batch" in " ".join(outcome.messages)


def test_a_case_answered_under_another_batch_id_is_refused(place: Path, key) -> None:
    """The senior batch's case relabelled into the analyst file: it matches no (batch, case)."""
    ws = make_workspace(emptied(place), key)
    path = ws.fill(ANALYST, "r.xlsx", "analyst-7", {(2, "application_id"): "APP-004"})
    outcome = ws.ingest(path)
    assert outcome.accepted == 3 and "not part of batch" in " ".join(outcome.messages)
    assert ws.count("SELECT count(*) FROM verdicts WHERE case_id = 'APP-004'") == 0


@pytest.mark.parametrize(
    "lookalike",
    ["APP\u2011001", "\u200bAPP-001", "APP-00\uff11", "APP-001\u00ad", "app-001"],
    ids=["non_breaking_hyphen", "zero_width_space", "fullwidth_digit", "soft_hyphen", "case"],
)
def test_lookalike_case_ids_never_match_a_case(place: Path, key, lookalike: str) -> None:
    ws = make_workspace(emptied(place), key)
    path = ws.fill(ANALYST, "r.xlsx", "analyst-7", {(2, "application_id"): lookalike})
    outcome = ws.ingest(path)
    assert outcome.accepted == 3 and "not part of batch" in " ".join(outcome.messages)
    assert ws.count("SELECT count(*) FROM verdicts WHERE case_id = 'APP-001'") == 0


def test_an_expired_batch_says_truly_whether_cases_were_escalated(place: Path, key) -> None:
    ws = make_workspace(emptied(place), key)
    late = CREATED + timedelta(hours=48 + 24 + 1)
    first = ws.ingest(ws.fill(ANALYST, "a.xlsx", "analyst-7"), now=late)
    assert "none of its cases escalated yet" in (first.error or "")
    assert "have been escalated" not in (first.error or "")
    ws.count(
        "INSERT INTO review_escalations VALUES ('sla_breach:consumer_credit:APP-001', "
        "'consumer_credit', 'sla_breach', 'APP-001', ?, 'credit_analyst', 'senior_underwriter', "
        "'late', now(), NULL) RETURNING 1",
        [ws.batches[ANALYST].batch_id],
    )
    second = ws.ingest(ws.fill(ANALYST, "b.xlsx", "analyst-7", {(2, "rationale"): "b"}), now=late)
    assert "1 of its cases escalated" in (second.error or "")


def test_a_four_eyes_first_opinion_is_reported_as_awaiting_the_second(place: Path, key) -> None:
    ws = make_workspace(emptied(place), key)
    outcome = ws.ingest(ws.fill(SENIOR, "a.xlsx", "uw-ana"))
    assert outcome.pending_second == 2 and not outcome.refused
    assert "2 four-eyes first opinion(s) recorded, awaiting the second reviewer" in (
        outcome.summary()
    )
    assert "signed by uw-ana (SHA256:" in outcome.summary()


def test_sweep_never_takes_an_error_report_for_a_returned_file(place: Path, key) -> None:
    from hitl_gate.review.intake.sweep import sweep_review

    ws = make_workspace(emptied(place), key)
    ws.ingest(ws.fill(ANALYST, "r.xlsx", "analyst-7", {(2, "verdict"): "maybe"}))
    assert list(ws.archive.glob("*.errors.csv"))
    refused = ws.fill(ANALYST, "u.xlsx", "analyst-7", {(2, "rationale"): "u"})
    ws.ingest(refused, sign=False)  # refused for its signature, archived
    with audit_connection(ws.db) as con:
        report = sweep_review(
            con, domain="consumer_credit", settings=ws.settings, review_dir=ws.root, now=IN_TIME
        )
    assert report.restored == 0 and report.unrecorded == ()
