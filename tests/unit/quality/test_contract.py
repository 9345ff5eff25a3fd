"""The data contract: schema construction, parsing of text values and row-level validation."""

from __future__ import annotations

from datetime import date, datetime

import pandera.polars as pa
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl_gate.core.domain import ColumnContract, ContractConfig, load_domain
from hitl_gate.quality import contract as contract_module
from hitl_gate.quality.contract import (
    FAILURE_SCHEMA,
    ROW_INDEX,
    build_schema,
    contract_digest,
    parse_series,
    validate_frame,
)

CONTRACT = ContractConfig(
    version=3,
    columns={
        "case_id": ColumnContract(type="str", nullable=False, unique=True),
        "seen_at": ColumnContract(type="datetime", nullable=False),
        "amount": ColumnContract(type="float", nullable=False, min=0, max=100),
        "term": ColumnContract(type="int", nullable=False, allowed=["36", "60"]),
        "kind": ColumnContract(type="str", allowed=["a", "b"]),
        "flag": ColumnContract(type="bool"),
        "born": ColumnContract(type="date"),
    },
)


def _frame(**overrides: list[str | None]) -> pl.DataFrame:
    """Four valid text rows, with some columns replaced."""
    base: dict[str, list[str | None]] = {
        "case_id": ["c1", "c2", "c3", "c4"],
        "seen_at": ["2018-01-03T10:15:00"] * 4,
        "amount": ["1.5", "0", "100", "42"],
        "term": ["36", "60", "36", "60"],
        "kind": ["a", "b", None, "a"],
        "flag": ["true", "0", None, "Yes"],
        "born": ["1980-02-29", None, "2000-01-01", "1999-12-31"],
    }
    return pl.DataFrame({**base, **overrides}, schema=dict.fromkeys(base, pl.String))


def test_schema_mirrors_the_declaration() -> None:
    schema = build_schema(CONTRACT, "case_id")
    assert isinstance(schema, pa.DataFrameSchema)
    assert list(schema.columns) == list(CONTRACT.columns)
    assert schema.columns["case_id"].unique and not schema.columns["case_id"].nullable
    assert schema.columns["seen_at"].dtype.type == pl.Datetime("us")
    assert len(schema.columns["amount"].checks) == 2
    assert schema.columns["kind"].nullable


def test_schema_forces_the_case_id_unique_and_required() -> None:
    loose = ContractConfig(version=1, columns={"id": ColumnContract(type="str")})
    column = build_schema(loose, "id").columns["id"]
    assert column.unique and not column.nullable


@pytest.mark.parametrize(
    "column",
    [
        ColumnContract(type="str", min=1),
        ColumnContract(type="int", allowed=["36", "sixty"]),
    ],
)
def test_schema_rejects_an_impossible_declaration(column: ColumnContract) -> None:
    contract = ContractConfig(version=1, columns={"id": ColumnContract(type="str"), "x": column})
    with pytest.raises(ValueError, match="'x'"):
        build_schema(contract, "id")


def test_schema_is_built_once_per_declaration_and_never_shared_between_two() -> None:
    """Validating file after file reuses one schema; an equal declaration loaded again shares
    it, a changed bound or another case id gets its own (a stale schema would pass bad rows)."""
    assert build_schema(CONTRACT, "case_id") is build_schema(CONTRACT, "case_id")
    again = ContractConfig.model_validate_json(CONTRACT.model_dump_json())
    assert again is not CONTRACT and build_schema(again, "case_id") is build_schema(
        CONTRACT, "case_id"
    )
    columns = {**CONTRACT.columns, "amount": ColumnContract(type="float", nullable=False, max=50)}
    tighter = ContractConfig(version=3, columns=columns)
    assert build_schema(tighter, "case_id") is not build_schema(CONTRACT, "case_id")
    by_kind = build_schema(CONTRACT, "kind")
    assert by_kind is not build_schema(CONTRACT, "case_id") and by_kind.columns["kind"].unique
    _, failures = validate_frame(_frame(amount=["1", "60", "2", "3"]), tighter, "case_id")
    assert failures.select("column", "check").rows() == [("amount", "max")]
    _, failures = validate_frame(_frame(amount=["1", "60", "2", "3"]), CONTRACT, "case_id")
    assert failures.height == 0


def test_schema_rejects_an_undeclared_case_id() -> None:
    with pytest.raises(ValueError, match="nope"):
        build_schema(CONTRACT, "nope")


@pytest.mark.parametrize(
    ("column_type", "text", "expected"),
    [
        (
            "int",
            ["36", " 7 ", "36.0", "+3", "3.5", "abc", "99999999999999999999", None],
            [36, 7, 36, 3, None, None, None, None],
        ),
        (
            "float",
            ["1.5", "1e3", " 2 ", "nan", "inf", "1,000", "-0.25"],
            [1.5, 1000.0, 2.0, None, None, None, -0.25],
        ),
        ("bool", ["true", "F", "yes", "0", "maybe"], [True, False, True, False, None]),
        (
            "date",
            ["2018-01-03", "2018-1-3", "2018-02-30", "03/01/2018"],
            [date(2018, 1, 3), None, None, None],
        ),
        ("str", ["x", None], ["x", None]),
    ],
)
def test_parse_series(column_type: str, text: list[str | None], expected: list[object]) -> None:
    assert parse_series(pl.Series("v", text, dtype=pl.String), column_type).to_list() == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-01-03T10:15:00", datetime(2018, 1, 3, 10, 15)),
        ("2018-01-03 10:15:00", datetime(2018, 1, 3, 10, 15)),
        ("2018-01-03T10:15:00.250000", datetime(2018, 1, 3, 10, 15, 0, 250000)),
        ("2018-01-03T10:15", datetime(2018, 1, 3, 10, 15)),
        ("2018-01-03T10:15:00Z", datetime(2018, 1, 3, 10, 15)),
        ("2018-01-03T10:15:00+01:00", datetime(2018, 1, 3, 9, 15)),
        ("2018-02-30T10:00:00", None),
        ("2018-01-03", None),
        ("soon", None),
    ],
)
def test_parse_datetime_reads_iso_8601_as_utc(text: str, expected: datetime | None) -> None:
    # The first value sets the fast path; the value under test must parse either way.
    for series in (["2018-01-01T00:00:00", text], ["2018-01-01 00:00:00", text]):
        parsed = parse_series(pl.Series("t", series), "datetime")
        assert parsed.dtype == pl.Datetime("us")
        assert parsed[1] == expected


def test_valid_rows_come_back_typed_with_extra_columns_untouched() -> None:
    df = _frame().with_columns(_note=pl.lit("kept"))
    valid, failures = validate_frame(df, CONTRACT, "case_id")
    assert failures.is_empty()
    assert failures.schema == pl.Schema(FAILURE_SCHEMA)
    assert valid.height == 4
    assert valid.schema["term"] == pl.Int64 and valid.schema["born"] == pl.Date
    assert valid["flag"].to_list() == [True, False, None, True]
    assert valid["_note"].to_list() == ["kept"] * 4


def test_each_broken_rule_is_one_failure_and_the_row_is_withheld() -> None:
    df = _frame(
        amount=["abc", "-1", "101", None],
        term=["36.0", "37", "60", "x"],
        kind=["a", "c", None, ""],
    )
    valid, failures = validate_frame(df, CONTRACT, "case_id")
    got = {(r["_row_index"], r["column"], r["check"]) for r in failures.iter_rows(named=True)}
    assert got == {
        (0, "amount", "type"),
        (1, "amount", "min"),
        (1, "term", "allowed"),
        (1, "kind", "allowed"),
        (2, "amount", "max"),
        (3, "amount", "not_null"),
        (3, "term", "type"),
    }
    assert valid.is_empty()
    messages = {(r, c): m for r, c, m in failures.select(ROW_INDEX, "column", "message").rows()}
    assert messages[0, "amount"] == "'abc' is not a float"
    assert messages[1, "amount"] == "'-1' is below the minimum 0"
    assert messages[1, "kind"] == "'c' is not one of: a, b"
    assert messages[2, "amount"] == "'101' is above the maximum 100"
    assert messages[3, "amount"] == "null is not allowed: the column is not nullable"
    assert messages[3, "term"] == "'x' is not an integer"
    assert failures.filter(check="allowed", column="term")["value"].item() == "37"


def test_a_value_that_does_not_parse_is_not_also_reported_as_missing() -> None:
    _, failures = validate_frame(
        _frame(seen_at=["yesterday", *["2018-01-03T10:15:00"] * 3]), CONTRACT, "case_id"
    )
    assert failures.select("column", "check", "value").rows() == [("seen_at", "type", "yesterday")]
    assert failures["message"].item() == "'yesterday' is not an ISO-8601 datetime"


def test_duplicate_case_ids_keep_the_first_occurrence() -> None:
    valid, failures = validate_frame(_frame(case_id=["c1", "c2", "c1", "c1"]), CONTRACT, "case_id")
    assert valid["case_id"].to_list() == ["c1", "c2"]
    assert failures["_row_index"].to_list() == [2, 3]
    assert set(failures["check"]) == {"duplicate_case_id"}
    assert failures["message"][0] == "'c1' duplicates an earlier case_id in this batch"


def test_typed_input_is_validated_like_text() -> None:
    typed = pl.DataFrame(
        {
            "case_id": ["a", "b"],
            "seen_at": [datetime(2018, 1, 3), datetime(2018, 1, 4)],
            "amount": [5, 500],
            "term": [36.0, 60.0],
            "kind": ["a", "b"],
            "flag": [True, None],
            "born": [date(2000, 1, 1), None],
        }
    )
    valid, failures = validate_frame(typed, CONTRACT, "case_id")
    assert valid["case_id"].to_list() == ["a"]
    assert valid.schema["amount"] == pl.Float64 and valid.schema["term"] == pl.Int64
    assert failures.select("column", "check", "value").rows() == [("amount", "max", "500")]


def test_empty_frame_validates_to_empty_frames() -> None:
    valid, failures = validate_frame(_frame().clear(), CONTRACT, "case_id")
    assert valid.is_empty() and failures.is_empty()
    assert valid.schema["seen_at"] == pl.Datetime("us")


def test_missing_contract_columns_are_a_caller_error() -> None:
    with pytest.raises(ValueError, match="amount"):
        validate_frame(_frame().drop("amount"), CONTRACT, "case_id")


def test_the_shipped_contract_builds() -> None:
    domain = load_domain("consumer_credit")
    schema = build_schema(domain.contract, domain.case_id)
    assert list(schema.columns) == list(domain.contract.columns)


def test_contract_digest_names_the_contract_version() -> None:
    digest = contract_digest(CONTRACT)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == contract_digest(ContractConfig.model_validate(CONTRACT.model_dump()))
    tightened = CONTRACT.model_copy(
        update={"columns": {**CONTRACT.columns, "amount": ColumnContract(type="float", max=50)}}
    )
    assert contract_digest(tightened) != digest


RULED = ContractConfig(
    version=1,
    columns={
        "case_id": ColumnContract(type="str", nullable=False),
        "kind": ColumnContract(type="str"),
        "amount": ColumnContract(type="float"),
        "income": ColumnContract(type="float"),
        "partner": ColumnContract(type="float"),
    },
    rules=[
        {"id": "partner_only_joint", "expr": "kind = 'joint' OR partner IS NULL", "message": "m1"},
        {"id": "amount_vs_income", "expr": "amount <= 2 * income", "message": "too much"},
    ],
)


def test_cross_field_rules_quarantine_rows_where_they_are_false() -> None:
    df = pl.DataFrame(
        {
            "case_id": ["a", "b", "c", "d"],
            "kind": ["joint", "single", "single", "single"],
            "amount": ["10", "10", "30", None],
            "income": ["10", "10", "10", "5"],
            "partner": ["5", "5", None, None],
        }
    )
    valid, failures = validate_frame(df, RULED, "case_id")
    assert valid["case_id"].to_list() == ["a", "d"]  # NULL passes, as in a SQL CHECK
    assert failures.select(ROW_INDEX, "column", "check").rows() == [
        (1, "kind,partner", "rule:partner_only_joint"),
        (2, "amount,income", "rule:amount_vs_income"),
    ]
    assert failures["message"][1] == (
        "'amount=30.0, income=10.0' breaks rule amount_vs_income: too much"
    )


@pytest.mark.parametrize(
    ("expr", "words"),
    [("nope > 1", "unknown: ['nope']"), ("amount >", "cannot parse"), ("1 = 1", "refer to")],
)
def test_a_rule_must_parse_and_name_contract_columns(expr: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        ContractConfig(
            version=1,
            columns={"amount": ColumnContract(type="float")},
            rules=[{"id": "r", "expr": expr, "message": "m"}],
        )


def test_rule_ids_are_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        ContractConfig(
            version=1,
            columns={"amount": ColumnContract(type="float")},
            rules=[{"id": "r", "expr": "amount > 0", "message": "m"}] * 2,
        )


def test_rules_are_part_of_the_contract_digest() -> None:
    assert contract_digest(RULED) != contract_digest(RULED.model_copy(update={"rules": []}))


def _mostly(valid: list[str | None], invalid: list[str | None]) -> st.SearchStrategy:
    """Valid values most of the time, so that many frames are clean but for one value."""
    return st.sampled_from(valid * 6 + invalid)


_VALUES = {
    "seen_at": _mostly(["2018-01-03T10:15:00"], [None, "2018-01-03"]),
    "amount": _mostly(["1.5", "0", "100", "-0.0"], ["100.01", "-1", "NaN", "inf", None, "x"]),
    "term": _mostly(["36", "60"], ["48", None, "36.0"]),
    "kind": _mostly(["a", "b", None], ["c", ""]),
    "flag": _mostly(["true", "0", None], ["maybe"]),
    "born": _mostly(["1980-02-29", None, "2000-01-01"], ["1980-02-30"]),
}


def _assert_shortcut_reports_what_pandera_reports(frame: pl.DataFrame) -> None:
    """With and without the clean-frame shortcut, the same valid rows and the same failures.

    The frame is validated again with pandera forced only when the shortcut called it clean:
    when it did not, the first validation ran pandera already, and the second one would be the
    same call on the same frame (nine frames in ten of the property suite's: half its time).
    """
    shortcut = contract_module._surely_passes
    verdicts: list[bool] = []

    def recorded(*args: object) -> bool:
        verdicts.append(shortcut(*args))
        return verdicts[-1]

    contract_module._surely_passes = recorded
    try:
        quick = validate_frame(frame, CONTRACT, "case_id")
        contract_module._surely_passes = lambda *_: False
        full = validate_frame(frame, CONTRACT, "case_id") if any(verdicts) else quick
    finally:
        contract_module._surely_passes = shortcut
    assert verdicts, "validation no longer asks the shortcut: this comparison tests nothing"
    assert quick[0].equals(full[0]) and quick[1].equals(full[1])


@pytest.mark.slow  # a property suite (300 frames, each validated twice): `make test`, not test-fast
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.fixed_dictionaries(_VALUES), min_size=1, max_size=5),
    ids=st.lists(_mostly(["c1", "c2", "c3", "c4", "c5"], [None, ""]), min_size=5, max_size=5),
)
def test_the_clean_frame_shortcut_reports_exactly_what_pandera_reports(rows, ids) -> None:
    """Skipping pandera on a frame proven clean never hides a failure: with and without the
    shortcut every frame gives the same valid rows and the same failures."""
    rows = [{"case_id": ids[i], **row} for i, row in enumerate(rows)]
    frame = pl.DataFrame(rows, schema=dict.fromkeys(["case_id", *_VALUES], pl.String))
    _assert_shortcut_reports_what_pandera_reports(frame)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"case_id": ["c1", "c1", None, ""]},
        {"seen_at": ["2018-01-03T10:15:00", None, "2018-01-03", "2018-01-03T10:15:00"]},
        {"amount": ["-0.0", "100.01", "-1", "inf"]},
        {"amount": ["1.5", "NaN", "0", "100"]},
        {"term": ["36", "48", None, "36.0"]},
        {"kind": ["a", "c", "", None]},
        {"flag": ["true", "maybe", None, "0"]},
        {"born": ["1980-02-30", None, "2000-01-01", "1980-02-29"]},
    ],
    ids=["clean", "case_id", "seen_at", "amount", "nan", "term", "kind", "flag", "born"],
)
def test_the_clean_frame_shortcut_agrees_with_pandera_on_each_kind_of_failure(
    overrides: dict[str, list[str | None]],
) -> None:
    """The property suite's corner values, one column at a time (test-fast's share of it)."""
    _assert_shortcut_reports_what_pandera_reports(_frame(**overrides))


def test_pandera_runs_only_on_frames_not_proven_clean(monkeypatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("pandera ran on a clean frame")

    monkeypatch.setattr(contract_module, "_schema", refuse)
    valid, failures = validate_frame(_frame(), CONTRACT, "case_id")
    assert valid.height == 4 and failures.height == 0
    for dirty in ({"amount": ["1", "101", "2", "3"]}, {"kind": ["a", "z", None, "b"]}):
        with pytest.raises(AssertionError, match="clean frame"):
            validate_frame(_frame(**dirty), CONTRACT, "case_id")
    with pytest.raises(AssertionError, match="clean frame"):  # NaN: pandera decides
        validate_frame(_frame(amount=["1", "NaN", "2", "3"]), CONTRACT, "case_id")
