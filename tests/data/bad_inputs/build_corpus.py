"""Rebuild the bad-input corpus: `python -m tests.data.bad_inputs.build_corpus`.

Every case is one or more landing files derived from three valid applications of the bundled
sample, each broken in one way, plus its expected outcome in `manifest.yaml`. The outcome is
written here by hand (what a data engineer should see), never recorded from a run:
`tests/test_bad_inputs.py` checks the pipeline against it.
"""

from __future__ import annotations

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
    return c


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
    header = "# Bad-input corpus: case -> expected outcome. Rebuild with build_corpus.py.\n"
    (HERE / "manifest.yaml").write_text(header + yaml.safe_dump(manifest, sort_keys=True))


if __name__ == "__main__":
    main()
