"""The domain's data contract as a pandera schema, and row-level validation against it.

Inputs arrive as text (CSV) or loosely typed (Parquet, JSONL), so validation first parses every
contract column from text into its declared type, recording values that do not parse as `type`
failures, then runs the pandera schema lazily so every failure of a row is recorded at once.
A failing row is returned in the failures frame, never silently dropped; valid rows flow on.
`pandera.polars` costs seconds to import, so it is imported only where a schema is built.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import lru_cache, partial
from typing import TYPE_CHECKING, cast

import polars as pl

from hitl_gate.core.domain import DEFAULT_FILE_FORMATS, ColumnContract, ContractConfig
from hitl_gate.quality.case_ids import (
    CASE_ID_FORM_CHECK,
    canonical_case_ids,
    id_form_message,
    matches_pattern,
)
from hitl_gate.quality.escaped import shown_series
from hitl_gate.quality.seen_values import SeenValues

if TYPE_CHECKING:
    import pandera.polars as pa

ROW_INDEX = "_row_index"

FAILURE_SCHEMA: dict[str, pl.DataType] = {
    ROW_INDEX: pl.Int64(),
    "column": pl.String(),
    "check": pl.String(),
    "value": pl.String(),
    "message": pl.String(),
}

# The Polars type of each declared contract type; the one map every reader of the contract uses.
CONTRACT_DTYPES: dict[str, pl.DataType] = {
    "str": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "datetime": pl.Datetime("us"),
    "date": pl.Date(),
}

_TYPE_LABELS = {
    "str": "a string",
    "int": "an integer",
    "float": "a float",
    "bool": "a boolean",
    "datetime": "an ISO-8601 datetime",
    "date": "a YYYY-MM-DD date",
}

_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]
# Naive ISO-8601 forms are taken as UTC; an explicit offset is converted to UTC.
_NAIVE_DATETIME_FORMATS = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
_ZONED_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"


def polars_dtype(column: ColumnContract) -> pl.DataType:
    """The Polars type a contract column is stored as once validated."""
    return CONTRACT_DTYPES[column.type]


def text_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    """Column `name` as text with blanks as null, for frames from different formats to stack."""
    expr = pl.col(name)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        expr = expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    if dtype != pl.String:
        expr = expr.cast(pl.String, strict=False)
    return _blank_as_null(expr).alias(name)


def _blank_as_null(expr: pl.Expr) -> pl.Expr:
    """Empty or whitespace-only text means 'no value', as in a CSV cell left empty."""
    return pl.when(expr.str.strip_chars() == "").then(None).otherwise(expr)


def _datetime_pass(fmt: str) -> Callable[[pl.Series], pl.Series]:
    """One vectorised datetime parse in a fixed naive format."""
    return lambda text: text.str.to_datetime(fmt, time_unit="us", strict=False)


def _parse_strict(text: pl.Series, column_type: str) -> pl.Series:
    """The fast path: `text` parsed in its canonical form, anything else null."""
    if column_type == "int":
        return text.cast(pl.Int64, strict=False)
    if column_type == "float":
        as_float = text.cast(pl.Float64, strict=False)
        return as_float.set(~as_float.is_finite(), None)
    if column_type == "date":
        parsed = text.str.to_date("%Y-%m-%d", strict=False)
        return parsed.set(text.str.len_bytes() != 10, None)
    lowered = text.str.to_lowercase()
    return pl.select(
        pl.when(lowered.is_in(_TRUE)).then(True).when(lowered.is_in(_FALSE)).then(False)
    ).to_series()


def _parse_lenient(text: pl.Series, column_type: str) -> pl.Series:
    """The slow path for the few values the fast path missed: padding, '36.0', a space or offset."""
    text = text.str.strip_chars()
    if column_type == "int":
        as_float = text.cast(pl.Float64, strict=False)
        integral = as_float.set(~as_float.is_finite() | (as_float.round(0) != as_float), None)
        return pl.select(
            pl.coalesce(text.cast(pl.Int64, strict=False), integral.cast(pl.Int64, strict=False))
        ).to_series()
    if column_type != "datetime":
        return _parse_strict(text, column_type)
    iso = text.str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
    naive = [iso.str.to_datetime(f, time_unit="us", strict=False) for f in _NAIVE_DATETIME_FORMATS]
    zoned = iso.str.to_datetime(
        _ZONED_DATETIME_FORMAT, time_unit="us", time_zone="UTC", strict=False
    ).dt.replace_time_zone(None)
    return pl.select(pl.coalesce(*naive, zoned)).to_series()


def _passes(text: pl.Series, column_type: str) -> list[Callable[[pl.Series], pl.Series]]:
    """Parsers to try in turn, cheapest and most likely first; each sees only what is left."""
    lenient = partial(_parse_lenient, column_type=column_type)
    if column_type != "datetime":
        return [partial(_parse_strict, column_type=column_type), lenient]
    # Writers use 'T' or ' ' consistently within a file: sniff the first value, then the other.
    first = text.drop_nulls().head(1).to_list()
    seps = [" ", "T"] if first and first[0][10:11] == " " else ["T", " "]
    return [*(_datetime_pass(f"%Y-%m-%d{sep}%H:%M:%S%.f") for sep in seps), lenient]


def _from_native(values: pl.Series, column_type: str) -> pl.Series | None:
    """Typed source values (Parquet, JSON numbers) converted without a detour through text."""
    dtype, target = values.dtype, CONTRACT_DTYPES[column_type]
    if column_type == "float" and dtype.is_numeric():
        as_float = values.cast(pl.Float64)
        return as_float.set(~as_float.is_finite(), None)
    if column_type == "int" and dtype.is_integer():
        return values.cast(pl.Int64, strict=False)
    if column_type == "int" and dtype.is_float():
        integral = values.set(~values.is_finite() | (values.round(0) != values), None)
        return integral.cast(pl.Int64, strict=False)
    if column_type == "datetime" and isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            values = values.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return values.cast(target)
    if dtype == target and column_type != "str":
        return values
    return None


def parse_series(values: pl.Series, column_type: str) -> pl.Series:
    """Values converted to `column_type`; a value that does not convert becomes null.

    Text is parsed in vectorised passes so canonical values cost one cast and only the rest pay
    for stripping and alternative formats; typed values are cast directly when that is exact,
    otherwise rendered as text and parsed like a CSV value.
    """
    if column_type not in CONTRACT_DTYPES:
        raise ValueError(f"unknown contract column type {column_type!r}")
    native = None if values.dtype == pl.String else _from_native(values, column_type)
    if native is not None:
        return native.alias(values.name)
    text = values.cast(pl.String, strict=False) if values.dtype != pl.String else values
    if column_type == "str":
        return text
    first, *rest = _passes(text, column_type)
    parsed = first(text)
    for parse in rest:
        missed = (parsed.is_null() & text.is_not_null()).arg_true()
        if not missed.len():
            break
        parsed = parsed.scatter(missed, parse(text.gather(missed)))
    return parsed.cast(CONTRACT_DTYPES[column_type]).alias(values.name)


def _allowed_values(name: str, column: ColumnContract) -> list[object]:
    """The declared allowed strings parsed into the column's type, so numbers compare as numbers."""
    parsed = parse_series(pl.Series(name, column.allowed, dtype=pl.String), column.type)
    bad = [v for v, p in zip(column.allowed or [], parsed.to_list(), strict=True) if p is None]
    if bad:
        raise ValueError(f"contract column '{name}': allowed values {bad} are not {column.type}")
    return parsed.to_list()


def _check_specs(name: str, column: ColumnContract) -> list[tuple[str, str, object]]:
    """The (label, pandera check, argument) triples a column declares, in schema order."""
    if (column.min is not None or column.max is not None) and column.type not in ("int", "float"):
        raise ValueError(f"contract column '{name}': min/max apply only to int and float columns")
    specs: list[tuple[str, str, object]] = []
    if column.min is not None:
        specs.append(("min", "ge", column.min))
    if column.max is not None:
        specs.append(("max", "le", column.max))
    if column.allowed is not None:
        specs.append(("allowed", "isin", _allowed_values(name, column)))
    return specs


class _ContractKey:
    """A contract as a cache key: equal when the declarations are (the model holds dicts, so
    it has no hash of its own)."""

    def __init__(self, contract: ContractConfig) -> None:
        self.contract = contract
        self.canonical = contract.model_dump_json()

    def __hash__(self) -> int:
        return hash(self.canonical)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ContractKey) and other.canonical == self.canonical


def _schema(contract: ContractConfig, case_id: str, *, unique: bool) -> pa.DataFrameSchema:
    """The pandera schema; uniqueness is optional because validation keeps first occurrences.

    Built once per contract: ingestion validates file by file (hundreds of landing files a
    run), and pandera's schema and its checks are the same for each.
    """
    return _built_schema(_ContractKey(contract), case_id, unique)


@lru_cache(maxsize=16)
def _built_schema(key: _ContractKey, case_id: str, unique: bool) -> pa.DataFrameSchema:
    import pandera.polars as pa

    contract = key.contract

    if case_id not in contract.columns:
        raise ValueError(f"case id '{case_id}' is not a contract column")
    columns = {}
    for name, column in contract.columns.items():
        is_case_id = name == case_id
        checks = [getattr(pa.Check, fn)(arg) for _, fn, arg in _check_specs(name, column)]
        columns[name] = pa.Column(
            polars_dtype(column),
            checks=checks,
            nullable=column.nullable and not is_case_id,
            unique=unique and (column.unique or is_case_id),
            required=True,
        )
    # strict=False: provenance columns (source file, row) travel alongside the contract columns.
    return pa.DataFrameSchema(columns, strict=False, name=f"contract_v{contract.version}")


def build_schema(contract: ContractConfig, case_id: str) -> pa.DataFrameSchema:
    """The contract as a pandera schema; the case id is always required, non-null and unique."""
    return _schema(contract, case_id, unique=True)


def contract_digest(contract: ContractConfig) -> str:
    """SHA-256 of the contract's canonical JSON, recorded with decisions to name the version.

    Fields added to the contract after version 1 shipped (`formats`) are left out while they
    hold their default, so an unchanged declaration keeps the digest it was recorded with.
    """
    dumped = contract.model_dump(mode="json")
    if tuple(dumped.get("formats", ())) == DEFAULT_FILE_FORMATS:
        del dumped["formats"]
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _empty_failures() -> pl.DataFrame:
    return pl.DataFrame(schema=FAILURE_SCHEMA)


def _type_failures(
    text: pl.DataFrame, typed: pl.DataFrame, contract: ContractConfig
) -> pl.DataFrame:
    """Rows whose non-null source value did not parse into the declared type.

    Which columns have any such row is asked in one Polars query over both frames (side by
    side, positionally named) instead of a few eager operations per column: a landing file is
    small, so its ~40 columns' fixed costs were most of this check."""
    names = list(contract.columns)
    side_by_side = pl.concat(
        [
            text.select(pl.col(n).alias(f"s{i}") for i, n in enumerate(names)),
            typed.select(pl.col(n).alias(f"t{i}") for i, n in enumerate(names)),
        ],
        how="horizontal",
    )
    any_failed = (
        side_by_side.select(
            (pl.col(f"s{i}").is_not_null() & pl.col(f"t{i}").is_null()).any().alias(f"f{i}")
            for i in range(len(names))
        ).row(0)
        if names
        else ()
    )
    parts = []
    for (name, column), failing in zip(contract.columns.items(), any_failed, strict=True):
        if not failing:
            continue
        failed = text[name].is_not_null() & typed[name].is_null()
        part = text.select(
            ROW_INDEX, pl.col(name).cast(pl.String, strict=False).alias("value")
        ).filter(failed)
        parts.append(
            part.with_columns(
                column=pl.lit(name),
                check=pl.lit("type"),
                message=pl.lit(f"is not {_TYPE_LABELS[column.type]}"),
            )
        )
    return pl.concat(parts).select(*FAILURE_SCHEMA) if parts else _empty_failures()


def _duplicate_failures(
    typed: pl.DataFrame,
    contract: ContractConfig,
    case_id: str,
    earlier: dict[str, SeenValues] | None = None,
) -> pl.DataFrame:
    """Later occurrences of a unique value; the first occurrence in batch order is kept.

    `earlier` holds the values of earlier frames of the same batch (see `validate_frame`),
    looked up by hash in time linear in this frame, whatever the number of earlier frames.
    """
    parts = []
    for name, column in contract.columns.items():
        if not (column.unique or name == case_id):
            continue
        dup = typed[name].is_not_null() & ~typed[name].is_first_distinct()
        if earlier is not None:
            dup = dup | earlier.setdefault(name, SeenValues()).repeats(typed[name])
        if not dup.any():
            continue
        check = "duplicate_case_id" if name == case_id else "unique"
        parts.append(
            typed.select(ROW_INDEX)
            .filter(dup)
            .with_columns(
                column=pl.lit(name),
                check=pl.lit(check),
                value=pl.lit(None, pl.String),
                message=pl.lit(f"duplicates an earlier {name} in this batch"),
            )
        )
    return pl.concat(parts).select(*FAILURE_SCHEMA) if parts else _empty_failures()


def _rule_failures(typed: pl.DataFrame, contract: ContractConfig) -> pl.DataFrame:
    """Rows breaking a cross-field rule (false, not NULL), with the values the rule looked at."""
    parts = []
    for rule in contract.rules:
        names = rule.columns()
        broken = typed.select(pl.sql_expr(rule.expr).not_().fill_null(False)).to_series()
        if not broken.any():
            continue
        shown = pl.concat_str(
            [pl.lit(f"{n}=") + pl.col(n).cast(pl.String).fill_null("null") for n in names],
            separator=", ",
        )
        parts.append(
            typed.filter(broken).select(
                ROW_INDEX,
                column=pl.lit(",".join(names)),
                check=pl.lit(f"rule:{rule.id}"),
                value=shown,
                message=pl.lit(f"breaks rule {rule.id}: {rule.message}"),
            )
        )
    return pl.concat(parts).select(*FAILURE_SCHEMA) if parts else _empty_failures()


def _surely_passes(typed: pl.DataFrame, contract: ContractConfig, case_id: str) -> bool:
    """Whether no row can fail the pandera schema, proven by one Polars pass over the frame.

    Pandera's lazy validation costs about 0.1 s a frame (hundreds of landing files a run),
    while nearly every file is clean. This pass asks, with the very expressions pandera's
    checks evaluate (`ge`, `le`, `is_in`, nulls passing), whether any value could fail, and
    more: any NaN in a float column, any null where nulls are not allowed, any column not of
    its contract type. Only a frame where nothing of that holds skips pandera; any doubt runs
    it, so the failures reported are pandera's, exactly (tests/unit/quality).
    """
    passes: list[pl.Expr] = []
    schema = typed.schema  # a new Schema object per access
    for name, column in contract.columns.items():
        if schema.get(name) != polars_dtype(column):  # a missing column: pandera names it
            return False
        col = pl.col(name)
        if not column.nullable or name == case_id:
            passes.append(col.null_count() == 0)
        if column.type == "float":
            passes.append(~col.is_nan().any())
        for _, fn, arg in _check_specs(name, column):
            if fn == "isin":
                kept = col.is_in(cast("list[object]", arg))
            else:
                kept = col.ge(arg) if fn == "ge" else col.le(arg)
            passes.append(kept.fill_null(True).all())
    return not passes or all(typed.select(e.alias(f"_{i}") for i, e in enumerate(passes)).row(0))


def _schema_failures(typed: pl.DataFrame, contract: ContractConfig, case_id: str) -> pl.DataFrame:
    """Failures pandera finds (nulls, ranges, allowed values), labelled with stable check names."""
    from pandera.errors import SchemaErrors

    if _surely_passes(typed, contract, case_id):
        return _empty_failures()
    schema = _schema(contract, case_id, unique=False)
    try:
        schema.validate(typed, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return _empty_failures()
    frame_level = cases.filter(pl.col("index").is_null())
    if frame_level.height:
        # Columns are cast to the contract first, so this is a bug here, not bad data.
        raise RuntimeError(f"contract schema failed on the whole frame: {frame_level.rows()}")
    labels = pl.DataFrame(
        [
            (name, i, label, _describe(label, name, contract.columns[name]))
            for name, column in contract.columns.items()
            for i, (label, _, _) in enumerate(_check_specs(name, column))
        ],
        schema={
            "column": pl.String,
            "check_number": pl.Int32,
            "label": pl.String,
            "text": pl.String,
        },
        orient="row",
    )
    cases = cases.join(labels, on=["column", "check_number"], how="left")
    not_null = pl.col("check") == "not_nullable"
    return cases.select(
        pl.col("index").cast(pl.Int64).alias(ROW_INDEX),
        "column",
        check=pl.when(not_null).then(pl.lit("not_null")).otherwise(pl.coalesce("label", "check")),
        value=pl.lit(None, pl.String),
        message=pl.when(not_null)
        .then(pl.lit("is not allowed: the column is not nullable"))
        .otherwise(pl.coalesce("text", pl.format("fails check {}", "check"))),
    )


def _describe(label: str, name: str, column: ColumnContract) -> str:
    """Human text for a declared check, appended to the failing value."""
    if label == "min":
        return f"is below the minimum {column.min:g}"
    if label == "max":
        return f"is above the maximum {column.max:g}"
    return f"is not one of: {', '.join(column.allowed or [])}"


def _with_source_values(failures: pl.DataFrame, text: pl.DataFrame) -> pl.DataFrame:
    """Fill each failure's value with the source text of that row and column."""
    rows = failures[ROW_INDEX].unique()
    # Rule failures name several columns and carry their own value text.
    cols = [c for c in failures["column"].drop_nulls().unique().to_list() if c in text.columns]
    long = (
        text.filter(pl.col(ROW_INDEX).is_in(rows.implode()))
        .select(ROW_INDEX, *(pl.col(c).cast(pl.String, strict=False) for c in cols))
        .unpivot(index=ROW_INDEX, variable_name="column", value_name="source")
    )
    return (
        failures.join(long, on=[ROW_INDEX, "column"], how="left")
        .with_columns(value=pl.coalesce("value", "source"))
        .drop("source")
    )


def _canonical_ids(
    typed: pl.DataFrame, case_id: str, pattern: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The frame with canonical case ids, and a `case_id_form` failure per id outside `pattern`."""
    raw = typed[case_id]
    canonical = canonical_case_ids(raw)
    bad = ~matches_pattern(canonical, pattern)
    typed = typed.with_columns(canonical)
    if not bad.any():
        return typed, _empty_failures()
    rows = typed.select(ROW_INDEX).filter(bad)
    values = raw.filter(bad)
    failures = rows.with_columns(
        column=pl.lit(case_id),
        check=pl.lit(CASE_ID_FORM_CHECK),
        value=values,
        message=pl.Series([id_form_message(v, pattern) for v in values.to_list()], dtype=pl.String),
    )
    return typed, failures.select(*FAILURE_SCHEMA)


def validate_frame(
    df: pl.DataFrame,
    contract: ContractConfig,
    case_id: str,
    earlier: dict[str, SeenValues] | None = None,
    id_pattern: str | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split `df` into rows that satisfy the contract and one failure record per broken rule.

    Contract columns may be text or any scalar type; valid rows come back with them typed per
    the contract and other columns untouched. Failures carry `_row_index` (0-based position in
    `df`), `column`, `check`, `value` (the source value as text) and `message`. Duplicate case
    ids keep their first occurrence in frame order, whatever else is wrong with that row.

    A batch can be validated frame by frame (one landing file at a time, so a day of ten
    million cases is never typed as one frame): pass the same `earlier` dict to each call and
    values of unique columns (the case id among them) seen in earlier frames count as earlier
    occurrences; each call adds its frame's values to it.

    With `id_pattern` (the domain's `case_id_pattern`), a text case id is made canonical (NFKC,
    trimmed) before anything compares it, valid rows carry the canonical id, and an id outside
    the pattern even then fails `case_id_form` (quality/case_ids.py).
    """
    missing = [name for name in contract.columns if name not in df.columns]
    if missing:
        raise ValueError(f"frame lacks contract columns {missing}; check columns before validating")
    schema = df.schema  # a new Schema object per access
    text = df.with_row_index(ROW_INDEX).with_columns(
        pl.col(ROW_INDEX).cast(pl.Int64),
        *(_blank_as_null(pl.col(n)).alias(n) for n in contract.columns if schema[n] == pl.String),
    )
    typed = text.with_columns(
        parse_series(text[name], c.type) for name, c in contract.columns.items()
    )
    id_fail = _empty_failures()
    if id_pattern is not None and contract.columns[case_id].type == "str":
        typed, id_fail = _canonical_ids(typed, case_id, id_pattern)
    type_fail = pl.concat([id_fail, _type_failures(text, typed, contract)])
    if typed.height:
        checked = _schema_failures(typed, contract, case_id).join(
            type_fail, on=[ROW_INDEX, "column"], how="anti"
        )
        checked = pl.concat([checked, _rule_failures(typed, contract)])
        dups = _duplicate_failures(typed, contract, case_id, earlier)
    else:
        checked = dups = _empty_failures()
    failures = pl.concat([type_fail, _with_source_values(pl.concat([checked, dups]), text)])
    quoted = pl.when(pl.col("value").is_null()).then(pl.lit("null"))
    failures = failures.with_columns(_shown=shown_series(failures["value"]))
    failures = (
        failures.with_columns(
            message=pl.concat_str(
                quoted.otherwise(pl.format("'{}'", "_shown")), pl.lit(" "), "message"
            )
        )
        .drop("_shown")
        .sort(ROW_INDEX, "column", "check", maintain_order=True)
    )
    bad_rows = failures[ROW_INDEX].unique().implode()
    valid = typed.filter(~pl.col(ROW_INDEX).is_in(bad_rows)).drop(ROW_INDEX)
    return valid, failures
