"""Property tests: for any mix of valid and invalid rows, every row is accounted for exactly once
and no accepted row breaks the contract."""

from __future__ import annotations

import tempfile
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl_gate.core.domain import load_domain
from hitl_gate.ingest.landing import discover_landing_files, ingest_files
from hitl_gate.quality.contract import build_schema, validate_frame
from tests.data.bad_inputs.build_corpus import base

pytestmark = pytest.mark.slow  # real component work: `make test` runs it, test-fast not

DOMAIN = load_domain("consumer_credit")
BASE = base()
DAY = date(2018, 1, 3)

# Values that break the contract, per column (type, range, allowed set, nullability, rule, time).
INVALID: dict[str, list[str | None]] = {
    "loan_amount": ["abc", "-1", "1e12", "NaN", "inf", None],
    "grade": ["Z", "", "a"],
    "term": ["37", "x", "36.5"],
    "application_time": ["yesterday", "2999-01-01T00:00:00", "2018-02-30T10:00:00"],
    "annual_income_joint": ["5000"],
    "installment": ["999999"],
    "delinq_2y": ["1.5", "-2", "99999999999999999999"],
    "state": [None, "  "],
    "application_id": [None],
}
# Values that differ from the base row but keep it valid.
VALID: dict[str, list[str | None]] = {
    "term": ["60", " 36", "36.0"],
    "grade": list("ABCDEFG"),
    "emp_title": [None, "", "caf\u00e9 owner", "x" * 5000, 'a "quoted", title'],
    "homeownership": ["OWN", "RENT", "MORTGAGE"],
    "application_time": ["2018-01-02 23:59:59", "2018-01-03T09:30:00+01:00"],
}


@st.composite
def rows(draw: st.DrawFn) -> tuple[dict[str, str | None], bool, int]:
    """One row: its values, whether it was broken on purpose, and which id it uses."""
    row = dict(BASE.row(draw(st.integers(0, BASE.height - 1)), named=True))
    for column in draw(st.sets(st.sampled_from(sorted(VALID)), max_size=3)):
        row[column] = draw(st.sampled_from(VALID[column]))
    broken = draw(st.sets(st.sampled_from(sorted(INVALID)), max_size=2))
    for column in broken:
        row[column] = draw(st.sampled_from(INVALID[column]))
    return row, bool(broken), draw(st.integers(0, 40))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=25), st.sampled_from(["csv", "jsonl", "parquet"]))
def test_every_row_is_accepted_or_quarantined_and_accepted_rows_hold(
    generated: list[tuple[dict[str, str | None], bool, int]], fmt: str
) -> None:
    values = []
    expected = set()
    seen_ids: set[int] = set()
    for position, (row, broken, id_number) in enumerate(generated, start=1):
        if row["application_id"] is not None:
            row = {**row, "application_id": f"P-{id_number}"}
            first = id_number not in seen_ids
            seen_ids.add(id_number)
        else:
            first = True
        if first and not broken:
            expected.add(position)
        values.append(row)
    frame = pl.DataFrame(values, schema=dict.fromkeys(BASE.columns, pl.String), orient="row")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / DOMAIN.landing_subdir / DAY.isoformat()
        folder.mkdir(parents=True)
        write = {
            "csv": frame.write_csv,
            "jsonl": frame.write_ndjson,
            "parquet": frame.write_parquet,
        }
        write[fmt](folder / f"cases.{fmt}")
        files = discover_landing_files(Path(tmp), DOMAIN.landing_subdir, DAY)
        result = ingest_files(files, DOMAIN.contract, DOMAIN.case_id)

    accounting = result.files.row(0, named=True)
    assert accounting["rows_read"] == len(generated)
    assert accounting["rows_accepted"] + accounting["rows_quarantined"] == len(generated)
    assert result.accepted.height == accounting["rows_accepted"]
    held = set(result.quarantine["row_number"])
    taken = set(result.accepted["_source_row"])
    assert not taken & held and len(taken | held) == len(generated)
    assert taken == expected

    # No accepted row violates the contract: it passes pandera, the rules and the time check.
    contract_columns = list(DOMAIN.contract.columns)
    build_schema(DOMAIN.contract, DOMAIN.case_id).validate(result.accepted.select(contract_columns))
    _, failures = validate_frame(result.accepted, DOMAIN.contract, DOMAIN.case_id)
    assert failures.is_empty()
    assert (result.accepted[DOMAIN.event_time] < datetime(2999, 1, 1)).all()
