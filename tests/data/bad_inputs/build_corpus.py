"""Rebuild the bad-input corpus: `python -m tests.data.bad_inputs.build_corpus`.

Every case is one or more landing files derived from three valid applications of the bundled
sample, each broken in one way, plus its expected outcome in `manifest.yaml`. The outcome is
written here by hand (what a data engineer should see), never recorded from a run:
`tests/test_bad_inputs.py` checks the pipeline against it.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from hitl_gate.core.domain import PROJECT_ROOT, load_domain

HERE = Path(__file__).resolve().parent
SAMPLE = PROJECT_ROOT / "data" / "sample" / "lendingclub_loans_2018q1.parquet"


@dataclass
class Case:
    """Files (name -> bytes) and the expected outcome."""

    files: dict[str, bytes]
    about: str
    file_errors: dict[str, str] = field(default_factory=dict)  # file -> whole-file check
    row_checks: dict[str, int] = field(default_factory=dict)  # check -> quarantine entries
    rows_read: int = 3
    rows_accepted: int = 3
    # Landing-side cases (issue 19): the name each stored file lands under, entries refused by
    # the folder listing (landed name -> reason), and how the case is staged (see
    # tests/unit/ingest/test_bad_inputs.py: contract_formats, marker, settle_seconds,
    # mtime_offsets, still_writing, append_after_listing, dirs).
    landed: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    staging: dict[str, object] = field(default_factory=dict)


def base() -> pl.DataFrame:
    """Three valid applications of the sample, as text, in contract column order."""
    domain = load_domain("consumer_credit")
    raw = pl.read_parquet(SAMPLE).filter(pl.col("application_type") == "individual").head(3)
    shaped = raw.with_columns(
        application_id=pl.format("BAD-{}", pl.col("rownames").cast(pl.String).str.zfill(5)),
        application_time=pl.lit("2018-01-03T09:30:00"),
    )
    return shaped.select(pl.col(c).cast(pl.String) for c in domain.contract.columns)


def csv(frame: pl.DataFrame, **kw: object) -> bytes:
    return frame.write_csv(**kw).encode("utf-8")


def put(frame: pl.DataFrame, row: int, **values: str | None) -> pl.DataFrame:
    """`frame` with columns of row `row` (1-based) replaced."""
    idx = pl.int_range(pl.len()) == row - 1
    return frame.with_columns(
        pl.when(idx).then(pl.lit(v, pl.String)).otherwise(pl.col(c)).alias(c)
        for c, v in values.items()
    )


def parquet(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def typed(frame: pl.DataFrame) -> pl.DataFrame:
    """The text rows with numbers as numbers and the time as a datetime, like a real export."""
    domain = load_domain("consumer_credit")
    casts = {"int": pl.Int64, "float": pl.Float64, "datetime": pl.Datetime("us")}
    return frame.with_columns(
        pl.col(n).str.to_datetime() if c.type == "datetime" else pl.col(n).cast(casts[c.type])
        for n, c in domain.contract.columns.items()
        if c.type in casts
    )


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")


def cases() -> dict[str, Case]:
    b = base()
    text = b.write_csv()
    header, *lines = text.splitlines()
    rows = b.to_dicts()
    c: dict[str, Case] = {}

    def bad(name: str, about: str, check: str, rows_read: int, data: bytes) -> None:
        c[name] = Case({name: data}, about, {name: check}, rows_read=rows_read, rows_accepted=0)

    def rows_bad(name: str, about: str, checks: dict[str, int], accepted: int, data: bytes) -> None:
        c[name] = Case({name: data}, about, row_checks=checks, rows_accepted=accepted)

    def fine(name: str, about: str, data: bytes) -> None:
        c[name] = Case({name: data}, about)

    # Whole-file failures: one clear error, every row of the file counted as quarantined.
    bad("empty.csv", "zero bytes", "empty_file", 0, b"")
    bad("whitespace_only.csv", "only blank lines", "empty_file", 0, b"  \n\n \n")
    bad("header_only.csv", "a header and no rows", "empty_file", 0, (header + "\n").encode())
    bad(
        "semicolon_delimiter.csv", "';' instead of ','", "missing_columns", 3, csv(b, separator=";")
    )
    bad("tab_delimiter.csv", "tabs instead of ','", "missing_columns", 3, csv(b, separator="\t"))
    bad("utf16.csv", "UTF-16 text", "encoding", 0, text.encode("utf-16"))
    bad(
        "latin1.csv",
        "Latin-1 accents",
        "encoding",
        3,
        put(b, 2, emp_title="caf\u00e9 g\u00e9rant").write_csv().encode("latin-1"),
    )
    bad(
        "duplicated_header.csv",
        "a column named twice",
        "duplicate_columns",
        3,
        "\n".join([header + ",grade", *(line + ",A" for line in lines)]).encode() + b"\n",
    )
    bad("missing_column.csv", "no grade column", "missing_columns", 3, csv(b.drop("grade")))
    bad(
        "missing_case_id_column.csv",
        "no case id column",
        "missing_columns",
        3,
        csv(b.drop("application_id")),
    )
    bad(
        "ragged_rows.csv",
        "a row with more fields than the header",
        "file_unreadable",
        0,
        "\n".join([header, lines[0], lines[1] + ",x,y", lines[2]]).encode() + b"\n",
    )
    bad("binary_garbage.csv", "random bytes", "encoding", 0, bytes(range(256)) * 4)
    bad(
        "renamed_header.csv",
        "columns renamed (CamelCase)",
        "missing_columns",
        3,
        csv(b.rename({"loan_amount": "LoanAmount", "annual_income": "AnnualIncome"})),
    )
    good_parquet = parquet(typed(b))
    bad(
        "corrupted.parquet",
        "bytes flipped in the middle",
        "file_unreadable",
        0,
        good_parquet[:200] + b"\x00" * 400 + good_parquet[600:],
    )
    bad("truncated.parquet", "cut short", "file_unreadable", 0, good_parquet[:-60])
    bad(
        "csv_named_parquet.parquet",
        "CSV text with a .parquet name",
        "file_unreadable",
        0,
        text.encode(),
    )
    bad(
        "parquet_missing_column.parquet",
        "no grade column",
        "missing_columns",
        3,
        parquet(typed(b).drop("grade")),
    )
    bad("empty.parquet", "schema and no rows", "empty_file", 0, parquet(typed(b).head(0)))
    bad(
        "parquet_nested_column.parquet",
        "grade is a list",
        "column_types",
        3,
        parquet(typed(b).with_columns(pl.concat_list("grade", "sub_grade").alias("grade"))),
    )
    bad(
        "jsonl_broken_line.jsonl",
        "one line is not JSON",
        "file_unreadable",
        0,
        jsonl(rows[:2]) + b"{broken\n",
    )
    bad("jsonl_holds_csv.jsonl", "CSV text with a .jsonl name", "file_unreadable", 0, text.encode())
    bad(
        "jsonl_missing_column.jsonl",
        "no grade key",
        "missing_columns",
        3,
        jsonl([{k: v for k, v in r.items() if k != "grade"} for r in rows]),
    )
    bad(
        "jsonl_nested_junk.jsonl",
        "grade holds an object",
        "column_types",
        3,
        jsonl([{**r, "grade": {"letter": "A", "junk": [1, 2]}} for r in rows]),
    )
    bad(
        "json_array.jsonl",
        "one JSON array, not JSON lines",
        "file_unreadable",
        0,
        json.dumps(rows).encode(),
    )

    # Row failures: the row is quarantined with file, row, column, check; the rest flows on.
    rows_bad(
        "wrong_type_amount.csv",
        "loan_amount 'abc'",
        {"type": 1},
        2,
        csv(put(b, 2, loan_amount="abc")),
    )
    rows_bad(
        "nan_inf_amounts.csv",
        "NaN, inf and -inf as amounts",
        {"type": 3},
        0,
        csv(put(put(put(b, 1, loan_amount="NaN"), 2, loan_amount="inf"), 3, loan_amount="-inf")),
    )
    rows_bad(
        "negative_amount.csv",
        "loan_amount -5000 (now also below the installment)",
        {"min": 1, "rule:installment_below_amount": 1},
        2,
        csv(put(b, 1, loan_amount="-5000")),
    )
    rows_bad(
        "absurd_amount.csv",
        "loan_amount 1e12",
        {"max": 1, "rule:loan_within_income": 1},
        2,
        csv(put(b, 3, loan_amount="1e12")),
    )
    rows_bad(
        "unknown_category.csv",
        "homeownership CASTLE",
        {"allowed": 1},
        2,
        csv(put(b, 2, homeownership="CASTLE")),
    )
    rows_bad("null_required.csv", "state left empty", {"not_null": 1}, 2, csv(put(b, 1, state="")))
    rows_bad(
        "null_case_id.csv",
        "no application id",
        {"not_null": 1},
        2,
        csv(put(b, 2, application_id=None)),
    )
    rows_bad(
        "duplicate_ids_within_file.csv",
        "row 3 repeats row 1's id",
        {"duplicate_case_id": 1},
        2,
        csv(put(b, 3, application_id=rows[0]["application_id"])),
    )
    rows_bad(
        "future_timestamp.csv",
        "applied in 2999",
        {"future_time": 1},
        2,
        csv(put(b, 1, application_time="2999-01-01T00:00:00")),
    )
    rows_bad(
        "bad_timestamp.csv",
        "application_time 'yesterday'",
        {"type": 1},
        2,
        csv(put(b, 2, application_time="yesterday")),
    )
    rows_bad(
        "impossible_date.csv",
        "30 February",
        {"type": 1},
        2,
        csv(put(b, 2, application_time="2018-02-30T10:00:00")),
    )
    rows_bad(
        "mixed_types_column.csv",
        "term '36', 'sixty', '60.5'",
        {"type": 2},
        1,
        csv(put(put(b, 2, term="sixty"), 3, term="60.5")),
    )
    rows_bad(
        "int_overflow.csv",
        "delinq_2y with 20 digits",
        {"type": 1},
        2,
        csv(put(b, 1, delinq_2y="99999999999999999999")),
    )
    rows_bad(
        "rule_joint_fields_on_individual.csv",
        "joint income on an individual application",
        {"rule:joint_fields_only_for_joint": 1},
        2,
        csv(put(b, 1, annual_income_joint="90000")),
    )
    rows_bad(
        "rule_loan_vs_income.csv",
        "borrowing 30000 on 10000 a year",
        {"rule:loan_within_income": 1},
        2,
        csv(put(b, 2, loan_amount="30000", annual_income="10000")),
    )
    rows_bad(
        "rule_installment_above_amount.csv",
        "installment bigger than the loan",
        {"rule:installment_below_amount": 1},
        2,
        csv(put(b, 3, installment="999999")),
    )
    rows_bad(
        "all_rows_bad.csv",
        "every row broken",
        {"allowed": 3},
        0,
        csv(b.with_columns(grade=pl.lit("Z"))),
    )
    rows_bad(
        "several_problems_one_row.csv",
        "one row, three broken columns",
        {"type": 1, "min": 1, "allowed": 1},
        2,
        csv(put(b, 2, loan_amount="x", interest_rate="-1", grade="Q")),
    )
    rows_bad(
        "parquet_nan_inf.parquet",
        "NaN and inf in a float column",
        {"type": 2},
        1,
        parquet(typed(b).with_columns(loan_amount=pl.Series([float("nan"), float("inf"), 5000.0]))),
    )
    rows_bad(
        "parquet_strings_for_numbers.parquet",
        "loan_amount stored as text 'abc'",
        {"type": 1},
        2,
        parquet(typed(b).with_columns(loan_amount=pl.Series(["abc", "1000", "2000"]))),
    )
    rows_bad(
        "jsonl_mixed_types.jsonl",
        "loan_amount a number, a string and a list",
        {"type": 1},
        2,
        jsonl([{**rows[0], "loan_amount": 1000}, {**rows[1], "loan_amount": "abc"}, rows[2]]),
    )
    c["duplicate_ids_across_files"] = Case(
        {"a.csv": csv(b), "b.csv": csv(put(b, 2, application_id="BAD-NEW"))},
        "b.csv repeats two of a.csv's ids",
        row_checks={"duplicate_case_id": 2},
        rows_read=6,
        rows_accepted=4,
    )

    # Awkward but valid: accepted whole.
    fine("bom.csv", "UTF-8 byte-order mark", b"\xef\xbb\xbf" + csv(b))
    fine("crlf_line_endings.csv", "Windows line endings", text.replace("\n", "\r\n").encode())
    fine(
        "blank_lines.csv",
        "blank lines between rows",
        "\n\n".join([header, *lines]).encode() + b"\n\n",
    )
    fine(
        "quoted_newline.csv",
        "a job title with a line break, quoted",
        csv(put(b, 1, emp_title="night\nshift, lead")),
    )
    fine("huge_field.csv", "a 300 kB job title", csv(put(b, 2, emp_title="x" * 300_000)))
    fine(
        "extra_columns.csv",
        "columns beyond the contract are ignored",
        csv(b.with_columns(note=pl.lit("n"), score=pl.lit("1"))),
    )
    fine("reordered_columns.csv", "columns in another order", csv(b.select(reversed(b.columns))))
    fine(
        "padded_values.csv",
        "spaces around numbers",
        csv(put(b, 1, loan_amount=" 5000 ", term=" 36")),
    )
    hostile_landing(c, b, rows)
    return c


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def hostile_landing(c: dict[str, Case], b: pl.DataFrame, rows: list[dict]) -> None:
    """Issue 19: hostile names, ids, partial files and formats. Stored under safe names."""
    text = b.write_csv()
    good = text.encode()
    other = csv(b.with_columns(application_id=pl.format("{}-B", "application_id")))
    third = csv(b.with_columns(application_id=pl.format("{}-C", "application_id")))

    def landing(
        case: str,
        about: str,
        files: dict[str, bytes],
        *,
        refused: dict[str, str] | None = None,
        rows_read: int = 3,
        rows_accepted: int = 3,
        file_errors: dict[str, str] | None = None,
        row_checks: dict[str, int] | None = None,
        **staging: object,
    ) -> None:
        stored = {f"f{i}{_stored_suffix(n)}": data for i, (n, data) in enumerate(files.items())}
        landed = dict(zip(stored, files, strict=True))
        c[case] = Case(
            stored,
            about,
            file_errors=file_errors or {},
            row_checks=row_checks or {},
            rows_read=rows_read,
            rows_accepted=rows_accepted,
            landed=landed,
            refused=refused or {},
            staging=staging,
        )

    # Names: read by their exact path, never as patterns; shown escaped.
    landing(
        "name_brackets_beside_plain",
        "x[1].csv beside x1.csv: each read as itself",
        {"x[1].csv": good, "x1.csv": other},
        rows_read=6,
        rows_accepted=6,
    )
    landing(
        "name_star_beside_siblings",
        "apps_*.csv beside apps_1.csv and apps_2.csv: no sibling read twice",
        {"apps_*.csv": good, "apps_1.csv": other, "apps_2.csv": third},
        rows_read=9,
        rows_accepted=9,
    )
    landing("name_open_bracket", "x[.csv: an invalid pattern, a valid name", {"x[.csv": good})
    landing(
        "name_question_mark",
        "a?.csv beside ab.csv",
        {"a?.csv": good, "ab.csv": other},
        rows_read=6,
        rows_accepted=6,
    )
    landing("name_spaces", "spaces in the name", {"my apps  2018.csv": good})
    landing("name_unicode", "accents and CJK in the name", {"caf\u00e9_\u7533\u8bf7.csv": good})
    landing("name_newline", "a newline that would fake a log line", {"apps\nINFO ok.csv": good})
    landing("name_carriage_return", "a CR in the name", {"apps\rx.csv": good})
    landing("name_tab_and_bell", "tab and BEL in the name", {"a\tb\x07.csv": good})
    landing("name_zero_width", "a zero-width space in the name", {"\u200bapps.csv": good})
    landing(
        "name_bidi_override", "a right-to-left override in the name", {"apps\u202etxt.csv": good}
    )
    landing(
        "name_upper_suffix", "APPS.CSV: suffixes compared case-insensitively", {"APPS.CSV": good}
    )
    # Every file accounted for: refused by convention, with their reason.
    landing(
        "refused_hidden_and_temporary",
        "hidden, temporary and lock files beside a good one",
        {
            "apps.csv": good,
            ".apps.csv": other,
            "apps.csv.tmp": other,
            "apps.csv.part": other,
            "apps.csv~": other,
            "~$apps.csv": other,
        },
        refused={
            ".apps.csv": "hidden",
            "apps.csv.tmp": "temporary",
            "apps.csv.part": "temporary",
            "apps.csv~": "temporary",
            "~$apps.csv": "temporary",
        },
    )
    landing(
        "refused_unsupported_types",
        "a .txt, an .xlsx, a name without suffix and a folder",
        {"apps.csv": good, "notes.txt": b"hello", "apps.xlsx": b"PK", "README": b"x"},
        refused={
            "notes.txt": "unsupported_type",
            "apps.xlsx": "unsupported_type",
            "README": "unsupported_type",
            "archive": "not_a_file",
        },
        dirs=["archive"],
    )
    landing(
        "refused_gzip_not_allowed",
        "apps.csv.gz where the contract allows only csv, parquet, jsonl",
        {"apps.csv.gz": gz(good)},
        refused={"apps.csv.gz": "unsupported_type"},
        rows_read=0,
        rows_accepted=0,
    )
    landing(
        "refused_tsv_not_allowed",
        "apps.tsv where the contract does not allow TSV",
        {"apps.tsv": csv(b, separator="\t")},
        refused={"apps.tsv": "unsupported_type"},
        rows_read=0,
        rows_accepted=0,
    )
    landing(
        "gzip_csv_allowed",
        "apps.csv.gz read when the contract allows csv.gz",
        {"apps.csv.gz": gz(good)},
        contract_formats=["csv", "csv.gz"],
    )
    landing(
        "tsv_allowed",
        "apps.tsv read when the contract allows tsv",
        {"apps.tsv": csv(b, separator="\t")},
        contract_formats=["csv", "tsv"],
    )
    landing(
        "gzip_tsv_crlf_allowed",
        "apps.tsv.gz with Windows line ends",
        {"apps.tsv.gz": gz(csv(b, separator="\t").replace(b"\n", b"\r\n"))},
        contract_formats=["tsv.gz"],
    )
    landing(
        "gzip_corrupt",
        "a .csv.gz that is not gzip",
        {"apps.csv.gz": good},
        contract_formats=["csv.gz"],
        file_errors={"apps.csv.gz": "file_unreadable"},
        rows_read=0,
        rows_accepted=0,
    )
    # Only complete files.
    landing(
        "partial_no_marker_yet",
        "the domain declares _SUCCESS and it is not there: nothing taken yet",
        {"apps.csv": good},
        refused={"apps.csv": "incomplete"},
        rows_read=0,
        rows_accepted=0,
        marker="_SUCCESS",
    )
    landing(
        "partial_marker_present",
        "_SUCCESS written after the files: all taken, the marker accounted for",
        {"apps.csv": good, "_SUCCESS": b""},
        refused={"_SUCCESS": "marker"},
        marker="_SUCCESS",
        mtime_offsets={"apps.csv": -60},
    )
    landing(
        "partial_modified_after_marker",
        "a file changed after _SUCCESS was written",
        {"apps.csv": good, "late.csv": other, "_SUCCESS": b""},
        refused={"_SUCCESS": "marker", "late.csv": "incomplete"},
        marker="_SUCCESS",
        mtime_offsets={"apps.csv": -60, "_SUCCESS": -30},
    )
    landing(
        "partial_still_being_written",
        "a file growing during the settle interval is not taken",
        {"apps.csv": good, "growing.csv": other},
        refused={"growing.csv": "incomplete"},
        settle_seconds=0.6,
        mtime_offsets={"apps.csv": -60},
        still_writing=["growing.csv"],
    )
    landing(
        "partial_changed_after_listing",
        "bytes appended between registration and reading: not parsed, hash mismatch",
        {"apps.csv": good},
        file_errors={"apps.csv": "file_changed"},
        rows_read=0,
        rows_accepted=0,
        append_after_listing=["apps.csv"],
    )
    last = good.rstrip(b"\n").rsplit(b"\n", 1)[1]
    cut = good[: good.rindex(last) + len(b",".join(last.split(b",")[:40]))]
    landing(
        "partial_cut_mid_row",
        "cut after field 40 of the last row (no settle signal): quarantined, never accepted",
        {"apps.csv": cut},
        row_checks={"not_null": 8},  # the 8 required columns after field 40
        rows_accepted=2,
    )
    # Canonical case ids.
    first = rows[0]["application_id"]

    def ids(*values: str) -> bytes:
        return csv(b.with_columns(application_id=pl.Series(values)))

    landing(
        "id_trailing_space_duplicate",
        "row 2 is row 1's id with a trailing space: one case",
        {"apps.csv": ids(first, first + " ", "BAD-T3")},
        row_checks={"duplicate_case_id": 1},
        rows_accepted=2,
    )
    landing(
        "id_zero_width_prefix",
        "a leading zero-width space",
        {"apps.csv": ids(first, "\u200b" + first, "BAD-Z3")},
        row_checks={"case_id_form": 1},
        rows_accepted=2,
    )
    landing(
        "id_non_breaking_hyphen",
        "BAD\u201100001: a non-breaking hyphen look-alike",
        {"apps.csv": ids(first, first.replace("-", "\u2011"), "BAD-H3")},
        row_checks={"case_id_form": 1},
        rows_accepted=2,
    )
    landing(
        "id_cyrillic_lookalike",
        "Cyrillic A and Cyrillic o in the id",
        {"apps.csv": ids(first, first.replace("A", "\u0410"), "BAD-C\u043e3")},
        row_checks={"case_id_form": 2},
        rows_accepted=1,
    )
    landing(
        "id_fullwidth_duplicate",
        "the full-width form of row 1's id: NFKC makes it the same case",
        {"apps.csv": ids(first, "\uff22\uff21\uff24-" + first[4:], "BAD-F3")},
        row_checks={"duplicate_case_id": 1},
        rows_accepted=2,
    )
    landing(
        "id_controls",
        "a BEL and an escaped newline inside ids",
        {"apps.csv": ids(first, "BAD-\x0700002", "BAD-\n00003")},
        row_checks={"case_id_form": 2},
        rows_accepted=1,
    )
    landing(
        "id_nbsp_inside",
        "a no-break space inside the id (NFKC: a space, outside the pattern)",
        {"apps.csv": ids(first, "BAD\u00a000002", "BAD-N3")},
        row_checks={"case_id_form": 1},
        rows_accepted=2,
    )
    landing(
        "id_only_invisible",
        "an id of a zero-width joiner only",
        {"apps.csv": ids(first, "\u200d", "BAD-I3")},
        row_checks={"case_id_form": 1},
        rows_accepted=2,
    )
    landing(
        "id_lookalike_across_files",
        "b.csv repeats a.csv's id with a trailing no-break space",
        {
            "a.csv": ids(first, "BAD-X2", "BAD-X3"),
            "b.csv": ids(first + "\u00a0", "BAD-Y2", "BAD-Y3"),
        },
        row_checks={"duplicate_case_id": 1},
        rows_read=6,
        rows_accepted=5,
    )
    # Strict formats.
    dup_key = "".join(
        json.dumps(r)[:-1] + (', "grade": "G"}' if i == 1 else "}") + "\n"
        for i, r in enumerate(rows)
    ).encode()
    landing(
        "jsonl_duplicate_key",
        "line 2 gives grade twice",
        {"apps.jsonl": dup_key},
        file_errors={"apps.jsonl": "duplicate_keys"},
        rows_read=3,
        rows_accepted=0,
    )
    landing(
        "jsonl_duplicate_key_nested",
        "a nested object with a key twice",
        {
            "apps.jsonl": jsonl(rows[:2])
            + (json.dumps(rows[2])[:-1] + ', "x": {"a": 1, "a": 2}}\n').encode()
        },
        file_errors={"apps.jsonl": "duplicate_keys"},
        rows_read=3,
        rows_accepted=0,
    )
    landing(
        "columns_differ_by_case",
        "Loan_Amount beside loan_amount",
        {"apps.csv": csv(b.with_columns(Loan_Amount=pl.lit("1")))},
        file_errors={"apps.csv": "ambiguous_columns"},
        rows_read=3,
        rows_accepted=0,
    )
    landing(
        "columns_differ_by_space",
        "' grade' beside grade",
        {"apps.csv": csv(b.with_columns(pl.lit("A").alias(" grade")))},
        file_errors={"apps.csv": "ambiguous_columns"},
        rows_read=3,
        rows_accepted=0,
    )
    landing(
        "jsonl_keys_differ_by_case",
        "GRADE and grade keys in JSON Lines",
        {"apps.jsonl": jsonl([{**r, "GRADE": "A"} for r in rows])},
        file_errors={"apps.jsonl": "ambiguous_columns"},
        rows_read=3,
        rows_accepted=0,
    )
    landing(
        "parquet_columns_differ_by_case",
        "Term beside term in Parquet",
        {"apps.parquet": parquet(typed(b).with_columns(Term=pl.lit(36)))},
        file_errors={"apps.parquet": "ambiguous_columns"},
        rows_read=3,
        rows_accepted=0,
    )
    landing(
        "cr_only_line_ends", "old-Mac CR line ends", {"apps.csv": text.replace("\n", "\r").encode()}
    )
    mixed = "".join(line + ("\r\n", "\r", "\n")[i % 3] for i, line in enumerate(text.splitlines()))
    landing("mixed_line_ends", "CRLF, CR and LF in one file", {"apps.csv": mixed.encode()})
    landing(
        "jsonl_cr_only",
        "JSON Lines with CR line ends",
        {"apps.jsonl": jsonl(rows).replace(b"\n", b"\r")},
    )


def _stored_suffix(name: str) -> str:
    """A safe suffix for the stored copy of a landed file (its landed name is in the manifest)."""
    lowered = name.lower()
    for suffix in (".csv.gz", ".tsv.gz", ".csv", ".tsv", ".jsonl", ".parquet"):
        if lowered.endswith(suffix):
            return suffix
    return ".bin"


def main() -> None:
    """Write every case's files under its own folder and the manifest of expected outcomes."""
    manifest = {}
    for name, case in cases().items():
        folder = HERE / "cases" / Path(name).stem
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, data in case.files.items():
            (folder / file_name).write_bytes(data)
        manifest[Path(name).stem] = {
            "about": case.about,
            "files": sorted(case.files),
            "file_errors": case.file_errors,
            "row_checks": case.row_checks,
            "rows_read": case.rows_read,
            "rows_accepted": case.rows_accepted,
        }
        if case.landed:
            manifest[Path(name).stem].update(
                landed=case.landed, refused=case.refused, staging=case.staging
            )
    header = "# Bad-input corpus: case -> expected outcome. Rebuild with build_corpus.py.\n"
    (HERE / "manifest.yaml").write_text(header + yaml.safe_dump(manifest, sort_keys=True))


if __name__ == "__main__":
    main()
