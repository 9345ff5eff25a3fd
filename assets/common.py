"""Small helpers shared by the asset factories: upstream keys and readable metadata."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import polars as pl
from dagster import AssetIn, AssetKey, MetadataValue

from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.slices import select_present
from hitl_gate.quality.escaped import shown as escaped


def stage_key(domain: DomainConfig, name: str) -> AssetKey:
    """The asset key of stage `name` in `domain` (`<domain>/<name>`)."""
    return AssetKey([domain.name, name])


def upstream(domain: DomainConfig, name: str) -> AssetIn:
    """An input wired to stage `name` of the same domain."""
    return AssetIn(key=stage_key(domain, name))


def collect_columns(frame: pl.LazyFrame, names: Iterable[str]) -> pl.DataFrame:
    """Read only the columns `names` of a stored stage (a scan), those it has, in that order.

    Steps that need a few columns of a wide stage (87 at routing) read just those: at a
    million cases that is the difference between about 1 GB and a few tens of MB. Columns a
    partition stored before they existed are left out, as reading the whole frame would.
    """
    return select_present(frame, names).collect()


# Significant digits a number keeps in metadata: enough to compare, few enough to read.
SIGNIFICANT_DIGITS = 4


def readable_number(value: float) -> float | int:
    """`value` rounded to `SIGNIFICANT_DIGITS` significant digits (whole numbers as int).

    A rate computed as 0.12345678901234567 shows as 0.1235; 1234567.8 as 1234568; NaN and
    infinities are left as they are.
    """
    if not math.isfinite(value):
        return value
    if value == int(value) and abs(value) < 1e15:
        return int(value)
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, max(digits, 0))
    return int(rounded) if digits <= 0 else rounded


def rounded(metadata: Mapping[str, object]) -> dict[str, object]:
    """Metadata with every plain float rounded (`readable_number`); other values unchanged."""
    return {k: readable_number(v) if isinstance(v, float) else v for k, v in metadata.items()}


def _cell(value: object) -> str:
    """A table cell: numbers rounded, control and invisible characters escaped (a file name
    with a newline would break the table or fake a row), `|` escaped for Markdown."""
    if value is None:
        return ""
    if isinstance(value, float):
        value = readable_number(value)
    return escaped(str(value), backslashes=False).replace("|", "\\|")


def markdown_table(frame: pl.DataFrame, max_rows: int = 10) -> str:
    """A small Markdown table, readable at a glance in the Dagster UI."""
    if frame.height == 0:
        return "_none_"
    shown = frame.head(max_rows)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.rows()]
    more = [f"\n_{frame.height - max_rows} more rows_"] if frame.height > max_rows else []
    return "\n".join([header, rule, *rows, *more])


def markdown_metadata(frame: pl.DataFrame, max_rows: int = 10) -> MetadataValue:
    """`markdown_table` as Markdown metadata, which the Dagster UI renders as a table."""
    return MetadataValue.md(markdown_table(frame, max_rows))
