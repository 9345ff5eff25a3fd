"""Review batches and the verdict gate: real files written to tmp_path and read back."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from dagster import asset, materialize
from openpyxl import load_workbook

from hitl_gate.app.demo_reviewer import fill_demo_verdicts
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.core.settings import HitlSettings
from hitl_gate.review.canonical import export_value, row_digest
from hitl_gate.review.export.batches import (
    VERDICT_COLUMNS,
    BatchExport,
    ReviewBatch,
    export_review_batches,
)
from hitl_gate.review.intake.validation import VerdictFileResult, validate_verdict_file
from hitl_gate.review.signing import KEY_ENV, load_or_create_key, sign, verify
from pipelines.resources import build_resources
from tests.review_fixtures import edit_xlsx

CASE_ID = "application_id"
VERDICTS = ["approve", "decline"]
CREATED = datetime(2018, 3, 2, 9, 30, tzinfo=UTC)
DAY = date(2018, 3, 1)


@pytest.fixture
def domain() -> DomainConfig:
    """The shipped credit domain with batches of three, so one queue spans two batches."""
    shipped = load_domain("consumer_credit")
    return shipped.model_copy(
        update={"review": shipped.review.model_copy(update={"batch_size": 3})}
    )


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.delenv(KEY_ENV, raising=False)
    return load_or_create_key(tmp_path / "secrets")


def _cases() -> pl.DataFrame:
    """Seven routed cases in two queues, with values that stress the round trip."""
    n = 7
    return pl.DataFrame(
        {
            CASE_ID: [f"APP-{i:03d}" for i in range(n)],
            "application_time": [datetime(2018, 3, 1, 8 + i, 15, 7) for i in range(n)],
            "loan_amount": [1000.0, 2500.5, 12000.0, 0.1 + 0.2, 40000.0, 999.999999, 5000.0],
            "term": [36, 60, 36, 36, 60, 36, 60],
            "loan_purpose": [
                "debt_consolidation",
                '=HYPERLINK("x")',
                "car",
                "house\r\nmove",
                "  other",
                "credit_card",
                "007",
            ],
            "annual_income": [52000.0, 1e7, 35000.0, 48000.0, 61000.0, 90000.0, 20000.0],
            "debt_to_income": [12.5, None, 30.25, float("nan"), 1 / 3, 0.0, 45.0],
            "homeownership": ["RENT", "OWN", "MORTGAGE", "RENT", "RENT", "OWN", "RENT"],
            "delinq_2y": [0, 1, 0, 2, 0, 0, 3],
            "inquiries_last_12m": [1, 0, 4, 2, 7, 1, 0],
            "grade": ["B", "C", "D", "E", "A", "B", "F"],
            "emp_title": ["Teacher", None, "Nurse", "=cmd|' /C calc'!A0", "", "Driver", "Chef"],
            "state": ["CA", "NY", "TX", "CA", "WA", "OR", "NV"],
            "review_queue": ["credit_review"] * 5 + ["fraud_check"] * 2,
            "review_priority": [2, 1, 1, 3, 2, 1, 1],
            "route_reason_code": [
                "BAND_D",
                "THIN_FILE",
                "BAND_D",
                "BAND_E",
                "HIGH_DTI",
                "FRAUD",
                "FRAUD",
            ],
            "rules_fired": [
                ["band_d"],
                ["thin_file"],
                ["band_d", "high_dti"],
                ["band_e"],
                ["high_dti"],
                [],
                None,
            ],
            "reason_texts": [
                ["Existing debt is high relative to income"],
                ["Short credit history", "Many recent credit inquiries"],
                [],
                None,
                ["Existing debt is high relative to income"],
                ["Free text reason"],
                [],
            ],
            "pd": [0.0512345678, 0.015, 0.07, 0.2, 0.031, 0.009, 0.5],
            "score": [610, 650, 590, 520, 630, 700, 480],
            "risk_band": ["D", "B", "D", "E", "C", "A", "E"],
        }
    )


def _export(tmp_path: Path, domain: DomainConfig, key: bytes) -> list[ReviewBatch]:
    return export_review_batches(
        _cases(),
        BatchExport(
            domain=domain,
            batches_dir=tmp_path / "batches",
            key=key,
            partition_date=DAY,
            created_at=CREATED,
            context={
                "policy_version": "v1",
                "model_name": "consumer_credit_pd",
                "model_version": "3",
            },
            rule_texts={
                "band_d": "Risk band D goes to a credit officer.",
                "high_dti": "Debt-to-income above 40% needs review.",
            },
        ),
    )


def _validate(tmp_path: Path, path: Path, key: bytes) -> VerdictFileResult:
    return validate_verdict_file(
        path,
        batches_dir=tmp_path / "batches",
        key=key,
        allowed_verdicts=VERDICTS,
        case_id=CASE_ID,
    )


def _demo_file(tmp_path: Path, batch: ReviewBatch, name: str = "returned.xlsx") -> Path:
    return fill_demo_verdicts(batch.folder, tmp_path / "inbox" / name)


# --- signing ---------------------------------------------------------------------------------


def test_key_is_created_once_with_private_mode(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    first = load_or_create_key(tmp_path / "secrets")
    path = tmp_path / "secrets" / "review_hmac.key"
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path / "secrets") == first


def test_key_from_environment_wins(tmp_path: Path, monkeypatch) -> None:
    """An injected `HITL_REVIEW_KEY` reaches the signing code through the resource's `EnvVar`."""
    seen: list[bytes] = []

    @asset(required_resource_keys={"review"})
    def signed(context) -> None:  # Dagster reads the bare parameter as the context
        seen.append(context.resources.review.signing_key())

    def run_with(value: str) -> None:
        monkeypatch.setenv(KEY_ENV, value)
        settings = HitlSettings.from_environ({KEY_ENV: value}, home=tmp_path)
        review = build_resources(settings)["review"]
        materialize([signed], resources={"review": review}, raise_on_error=True)

    run_with("ab" * 32)
    assert seen == [bytes.fromhex("ab" * 32)]
    assert not (tmp_path / "secrets" / "review_hmac.key").exists()
    with pytest.raises(Exception, match=KEY_ENV):
        run_with("not-hex")
    assert load_or_create_key(tmp_path / "s2", "cd" * 16) == bytes.fromhex("cd" * 16)
    with pytest.raises(ValueError, match=KEY_ENV):
        load_or_create_key(tmp_path / "s2", "ab" * 8)  # shorter than 16 bytes


def test_signature_ignores_key_order_and_detects_changes() -> None:
    key = b"k" * 32
    signature = sign({"a": 1, "b": [1, 2]}, key)
    assert verify({"b": [1, 2], "a": 1}, signature, key)
    assert not verify({"a": 2, "b": [1, 2]}, signature, key)
    assert not verify({"a": 1, "b": [1, 2]}, signature, b"x" * 32)
    assert not verify({"a": 1, "b": [1, 2]}, "é", key)


# --- canonical digests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        5000.0,
        0.1 + 0.2,
        1 / 3,
        1e7,
        0.0512345678,
        36,
        0,
        -1.5,
        None,
        float("nan"),
        "",
        "007",
        "=SUM(A1)",
        "a\r\nb",
        "  padded",
        True,
        datetime(2018, 3, 1, 8, 15, 7),
        date(2018, 3, 1),
        ["x", "y"],
    ],
)
def test_digest_survives_xlsx_and_csv_round_trip(tmp_path: Path, value: object) -> None:
    from openpyxl import Workbook

    exported = {"v": export_value(value)}
    digest = row_digest(exported, ["v"])
    workbook = Workbook()
    cell = workbook.active.cell(1, 1, exported["v"])
    if isinstance(cell.value, str):
        cell.data_type = "s"
    workbook.save(tmp_path / "v.xlsx")
    from_xlsx = load_workbook(tmp_path / "v.xlsx", read_only=True).active.cell(1, 1).value
    assert row_digest({"v": from_xlsx}, ["v"]) == digest

    from hitl_gate.review.canonical import csv_text

    with (tmp_path / "v.csv").open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow([csv_text(exported["v"])])
    with (tmp_path / "v.csv").open(encoding="utf-8", newline="") as handle:
        from_csv = next(csv.reader(handle))[0]
    assert row_digest({"v": from_csv}, ["v"]) == digest


# --- export ----------------------------------------------------------------------------------


def test_export_groups_by_queue_and_orders_by_priority(tmp_path, domain, key) -> None:
    batches = _export(tmp_path, domain, key)
    assert [(b.queue, b.case_ids) for b in batches] == [
        ("credit_review", ("APP-001", "APP-002", "APP-000")),
        ("credit_review", ("APP-004", "APP-003")),
        ("fraud_check", ("APP-005", "APP-006")),
    ]
    first = batches[0]
    digest8 = hashlib.sha256("\n".join(sorted(first.case_ids)).encode()).hexdigest()[:8]
    assert first.batch_id == f"consumer_credit-20180301-credit_review-001-{digest8}"
    assert first.due_at == datetime(2018, 3, 4, 9, 30, tzinfo=UTC)
    assert sorted(p.name for p in (tmp_path / "batches").iterdir()) == sorted(
        b.batch_id for b in batches
    )  # no temporary folders left behind


def test_workbook_has_dropdowns_protection_and_instructions(tmp_path, domain, key) -> None:
    batch = _export(tmp_path, domain, key)[0]
    workbook = load_workbook(batch.folder / "cases.xlsx")
    sheet = workbook["cases"]
    header = [cell.value for cell in sheet[1]]
    # The answer columns beside the frozen case id; the repeated batch id last.
    assert header[:5] == [CASE_ID, *VERDICT_COLUMNS] and header[-1] == "batch_id"
    shown = {"score", "pd_percent", "risk_band", "band_limits", "route_reason_code"}
    assert shown | {"rules_fired", "reasons", "four_eyes", "qa_sample"} <= set(header)
    assert "pd" not in header  # as a percentage instead of a raw float
    assert sheet.protection.sheet
    assert sheet.freeze_panes == "B2"
    assert sheet.page_setup.orientation == "landscape" and sheet.print_title_rows == "$1:$1"
    col = {name: index for index, name in enumerate(header, start=1)}
    for row in range(2, 2 + len(batch.case_ids)):
        assert all(not sheet.cell(row, col[name]).protection.locked for name in VERDICT_COLUMNS)
        assert sheet.cell(row, col[CASE_ID]).protection.locked
        assert sheet.cell(row, col["loan_amount"]).protection.locked
    validations = {
        str(dv.sqref).split(":")[0].rstrip("0123456789"): dv
        for dv in sheet.data_validations.dataValidation
    }
    lists = workbook["lists"]
    assert lists.sheet_state == "hidden"

    def choices(column: str) -> list[str]:
        dv = validations[sheet.cell(1, col[column]).column_letter]
        assert dv.type == "list"
        cells = dv.formula1.split("!")[1].replace("$", "")
        return [c.value for row in lists[cells] for c in row]

    assert choices("verdict") == VERDICTS
    assert choices("verdict_reason_code") == [f"R{i:02d}" for i in range(1, 14)] + ["OTHER"]
    # The formula-like text stays text and the model reasons carry their codes.
    app_001 = {header[c.column - 1]: c.value for c in sheet[2]}
    assert app_001["loan_purpose"] == '\'=HYPERLINK("x")'  # neutralised, as in cases.csv
    assert app_001["reasons"].splitlines() == [
        "R13: Short credit history [credit_history_years = not in the case data]",
        "R06: Many recent credit inquiries [inquiries_last_12m = 0]",
    ]
    guide = " ".join(str(c.value) for row in workbook["instructions"].iter_rows() for c in row)
    assert "2018-03-04 09:30 UTC" in guide
    assert "Risk band D goes to a credit officer." in guide
    assert "(rule text not supplied)" in guide  # thin_file fired but has no text
    assert "inbox/" in guide


def test_manifest_is_signed_and_pins_the_files(tmp_path, domain, key) -> None:
    batch = _export(tmp_path, domain, key)[0]
    raw = (batch.folder / "manifest.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == batch.manifest_sha256
    manifest = json.loads(raw)
    body = {k: v for k, v in manifest.items() if k != "signature"}
    assert verify(body, manifest["signature"], key)
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((batch.folder / name).read_bytes()).hexdigest() == digest
    assert manifest["case_ids"] == list(batch.case_ids)
    assert set(manifest["case_digests"]) == set(batch.case_ids)
    assert manifest["context"]["model_version"] == "3"
    # Case ids are the only case data in the manifest.
    assert "debt_consolidation" not in raw.decode() and "52000" not in raw.decode()
    with (batch.folder / "cases.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r[CASE_ID] for r in rows] == list(batch.case_ids)
    assert all(r["batch_id"] == batch.batch_id and r["verdict"] == "" for r in rows)


def test_re_export_is_idempotent(tmp_path, domain, key) -> None:
    first = _export(tmp_path, domain, key)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "batches").rglob("*")}
    later = export_review_batches(
        _cases(),
        BatchExport(
            domain=domain,
            batches_dir=tmp_path / "batches",
            key=key,
            partition_date=DAY,
            created_at=datetime(2018, 3, 5, tzinfo=UTC),
            context={},
        ),
    )
    assert later == first  # same ids, same created/due times, same manifest bytes
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "batches").rglob("*")} == stamps


def test_batch_with_unverifiable_manifest_is_replaced_and_kept(tmp_path, domain, key) -> None:
    first = _export(tmp_path, domain, key)[0]
    again = _export(tmp_path, domain, b"rotated-key" * 3)[0]
    assert again.batch_id == first.batch_id
    assert again.manifest_sha256 != first.manifest_sha256
    kept = {p.name.split(".")[0] for p in (tmp_path / "batches" / ".replaced").iterdir()}
    assert first.batch_id in kept and len(kept) == 3  # every batch of the partition


def test_export_refuses_naive_time_and_missing_columns(tmp_path, domain, key) -> None:
    with pytest.raises(ValueError, match="timezone"):
        export_review_batches(
            _cases(),
            BatchExport(
                domain=domain,
                batches_dir=tmp_path,
                key=key,
                partition_date=DAY,
                created_at=datetime(2018, 3, 2),
                context={},
            ),
        )
    with pytest.raises(ValueError, match="risk_band"):
        export_review_batches(
            _cases().drop("risk_band"),
            BatchExport(
                domain=domain,
                batches_dir=tmp_path,
                key=key,
                partition_date=DAY,
                created_at=CREATED,
                context={},
            ),
        )


# --- verdicts --------------------------------------------------------------------------------


def test_demo_reviewer_file_is_fully_accepted(tmp_path, domain, key) -> None:
    batch = _export(tmp_path, domain, key)[0]
    result = _validate(tmp_path, _demo_file(tmp_path, batch), key)
    assert result.error is None and result.rejected.is_empty()
    assert result.batch_id == batch.batch_id
    accepted = result.accepted
    assert accepted.columns[:8] == [
        "batch_id",
        CASE_ID,
        *VERDICT_COLUMNS,
        "file_sha256",
        "suggested_action",
    ]
    assert {"row_number", "four_eyes", "is_override"} <= set(accepted.columns)
    assert accepted[CASE_ID].to_list() == list(batch.case_ids)
    # APP-001 is band B, APP-002 and APP-000 band D: declined with the model's first reason.
    assert accepted["verdict"].to_list() == ["approve", "decline", "decline"]
    assert accepted["verdict_reason_code"].to_list() == ["", "OTHER", "R03"]
    assert all(r.startswith("DEMO reviewer") for r in accepted["rationale"])
    assert accepted["row_number"].to_list() == [2, 3, 4]
    assert set(accepted["file_sha256"]) == {result.file_sha256}


def test_blank_verdicts_are_pending_not_rejected(tmp_path, domain, key) -> None:
    batch = _export(tmp_path, domain, key)[0]
    path = _demo_file(tmp_path, batch)
    edit_xlsx(path, {(3, "verdict"): None, (4, "verdict"): " "})
    result = _validate(tmp_path, path, key)
    assert result.accepted.height == 1 and result.rejected.is_empty()
    assert result.not_reviewed == 2


def test_tampered_rows_are_rejected_one_by_one(tmp_path, domain, key) -> None:
    batches = _export(tmp_path, domain, key)
    path = _demo_file(tmp_path, batches[0])
    edit_xlsx(
        path,
        {
            (2, "loan_amount"): 1.0,  # edited context
            (3, "verdict"): "maybe",  # not an allowed verdict
            (4, "reviewer_id"): None,  # no reviewer
        },
    )
    workbook = load_workbook(path)
    sheet = workbook["cases"]
    other = load_workbook(batches[1].folder / "cases.xlsx")["cases"]
    header = [c.value for c in other[1]]
    foreign = [c.value for c in other[2]]
    answers = dict(zip(VERDICT_COLUMNS, ["APPROVE", "", "ok", "rev-7"], strict=True))
    foreign = [answers.get(name, value) for name, value in zip(header, foreign, strict=True)]
    sheet.append(foreign)  # a case from another batch, with its batch id
    smuggled = list(foreign)
    smuggled[header.index("batch_id")] = batches[0].batch_id
    sheet.append(smuggled)  # the same case relabelled as this batch
    workbook.save(path)

    result = _validate(tmp_path, path, key)
    assert result.error is None and result.accepted.is_empty()
    problems = {(r["row_number"], r["column"]) for r in result.rejected.iter_rows(named=True)}
    assert problems == {
        (2, "context"),
        (3, "verdict"),
        (4, "reviewer_id"),
        (5, "batch_id"),
        (5, CASE_ID),
        (6, CASE_ID),
    }
    messages = result.rejected.filter(pl.col("row_number") == 2)["message"].to_list()
    assert messages == [
        f"{path.name} row 2, column 'context': case context differs from "
        "what was exported (a locked column was edited)"
    ]


def test_duplicate_cases_and_unknown_reason_codes_are_rejected(tmp_path, domain, key) -> None:
    batch = _export(tmp_path, domain, key)[0]
    path = _demo_file(tmp_path, batch)
    workbook = load_workbook(path)
    sheet = workbook["cases"]
    sheet.append([c.value for c in sheet[4]])  # APP-000 twice
    workbook.save(path)
    edit_xlsx(path, {(3, "verdict_reason_code"): "R99", (2, "verdict"): "Decline"})
    result = _validate(tmp_path, path, key)
    assert result.accepted[CASE_ID].to_list() == ["APP-001"]
    assert result.accepted["verdict"].to_list() == ["decline"]  # normalised to lower case
    problems = {(r["row_number"], r["column"]) for r in result.rejected.iter_rows(named=True)}
    assert problems == {(4, CASE_ID), (5, CASE_ID), (3, "verdict_reason_code")}


def test_tampered_manifest_refuses_the_whole_file(tmp_path, domain, key) -> None:
    batch = _export(tmp_path, domain, key)[0]
    path = _demo_file(tmp_path, batch)
    manifest_path = batch.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["due_at"] = "2030-01-01T00:00:00+00:00"
    manifest_path.write_text(json.dumps(manifest))
    result = _validate(tmp_path, path, key)
    assert result.error == "manifest signature invalid"
    assert result.accepted.is_empty() and result.rejected.is_empty()


def test_csv_return_path(tmp_path, domain, key) -> None:
    batch = _export(tmp_path, domain, key)[1]
    with (batch.folder / "cases.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0].update(verdict="Approve", verdict_reason_code="", rationale="fine", reviewer_id="rev-1")
    rows[1].update(
        verdict="decline",
        verdict_reason_code="r04",
        rationale="",
        reviewer_id="rev-1",
        loan_purpose="edited",
    )
    returned = tmp_path / "inbox" / "returned.csv"
    returned.parent.mkdir()
    # Excel writes UTF-8 CSV with a byte-order mark; the reader must cope.
    with returned.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = _validate(tmp_path, returned, key)
    assert result.error is None
    assert result.accepted[CASE_ID].to_list() == [batch.case_ids[0]]
    assert result.accepted["verdict"].to_list() == ["approve"]
    assert result.rejected["column"].to_list() == ["context"]


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("notes.txt", b"hello", "unsupported file type"),
        ("broken.xlsx", b"not a zip", "unreadable"),
        ("short.csv", b"batch_id,application_id\nx,y\n", "missing columns"),
        ("bad.csv", b"\xff\xfe\x00garbage", "unreadable"),
        ("empty.csv", b"", "missing columns"),
    ],
)
def test_whole_file_problems_never_raise(tmp_path, key, name, content, error) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = _validate(tmp_path, path, key)
    assert result.error is not None and error in result.error
    assert result.accepted.is_empty() and result.rejected.is_empty()
    assert result.file_sha256 == hashlib.sha256(content).hexdigest()


def test_unknown_batch_is_a_file_error(tmp_path, domain, key) -> None:
    batch = _export(tmp_path, domain, key)[0]
    path = _demo_file(tmp_path, batch)
    rows = range(2, 2 + len(batch.case_ids))
    edit_xlsx(path, {(row, "batch_id"): "../../etc" for row in rows})
    assert "unknown batch" in (_validate(tmp_path, path, key).error or "")
    edit_xlsx(path, {(row, "batch_id"): "consumer_credit-20180301-x-001-00000000" for row in rows})
    assert "unknown batch" in (_validate(tmp_path, path, key).error or "")
    assert os.path.exists(batch.folder)  # nothing outside the inbox file was touched


# --- formula neutralisation, both reviewer files (issue 19, item 9) ---------------------------

HOSTILE_TEXT = [
    '=HYPERLINK("http://x","click")',
    "+1+2",
    "-2+3",
    "@SUM(A1)",
    "\t=1+1",
    "\r=1+1",
    "\uff1dHYPERLINK(1)",
    "\uff0b1",
    "\uff0d1",
    "\uff20SUM(A1)",
]


def test_csv_and_xlsx_neutralise_formulas_the_same_way_and_round_trip(
    tmp_path, domain, key
) -> None:
    """Every trigger (= + - @, tab, CR, full-width = + - @) is text in both files, the same
    text, and a returned file carrying it back unedited still matches the exported context."""
    from hitl_gate.review.canonical import neutralise_formula

    cases = _cases()
    purposes = HOSTILE_TEXT[: cases.height]
    titles = HOSTILE_TEXT[cases.height :] + ["'=already quoted"] * (
        2 * cases.height - len(HOSTILE_TEXT)
    )
    hostile = cases.with_columns(
        loan_purpose=pl.Series(purposes), emp_title=pl.Series(titles[: cases.height])
    )
    batches = export_review_batches(
        hostile,
        BatchExport(
            domain=domain,
            batches_dir=tmp_path / "batches",
            key=key,
            partition_date=DAY,
            created_at=CREATED,
            context={},
        ),
    )
    for batch in batches:
        sheet = load_workbook(batch.folder / "cases.xlsx", read_only=True)["cases"]
        rows = sheet.iter_rows(values_only=True)
        header = list(next(rows))
        from_xlsx = [dict(zip(header, row, strict=False)) for row in rows]
        with (batch.folder / "cases.csv").open(encoding="utf-8", newline="") as handle:
            from_csv = list(csv.DictReader(handle))
        by_id = {r[CASE_ID]: r for r in hostile.to_dicts()}
        for in_xlsx, in_csv in zip(from_xlsx, from_csv, strict=True):
            source = by_id[in_csv[CASE_ID]]
            for column in ("loan_purpose", "emp_title"):
                expected = neutralise_formula(source[column])
                assert in_csv[column] == expected, (column, source[column])
                # XML keeps no CR: the workbook holds it as LF, the same line break.
                assert in_xlsx[column] == expected.replace("\r", "\n"), (column, source[column])
                assert expected[:1] == "'" or source[column][:1] not in "=+-@\t\r"
        # Returned as exported (demo verdicts added): no row is refused for its context.
        demo = _demo_file(tmp_path, batch, f"{batch.batch_id}.xlsx")
        result = _validate(tmp_path, demo, key)
        assert result.error is None and result.rejected.is_empty(), result.rejected
        assert result.accepted.height == len(from_csv)
        answered = load_workbook(demo, read_only=True)["cases"].iter_rows(values_only=True)
        names = list(next(answered))
        for row, answers in zip(from_csv, answered, strict=True):
            filled = dict(zip(names, answers, strict=False))
            row.update({c: filled[c] or "" for c in VERDICT_COLUMNS})
        returned = tmp_path / "inbox" / f"{batch.batch_id}.csv"
        with returned.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(from_csv[0]))
            writer.writeheader()
            writer.writerows(from_csv)
        result = _validate(tmp_path, returned, key)
        assert result.error is None and result.rejected.is_empty(), result.rejected
        assert result.accepted.height == len(from_csv)  # reviewed rows: context digests checked
