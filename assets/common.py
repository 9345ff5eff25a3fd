"""Small helpers shared by the asset factories: upstream keys and readable metadata."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
from dagster import AssetIn, AssetKey

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


def _cell(value: object) -> str:
    """A table cell: control and invisible characters escaped (a file name with a newline
    would break the table or fake a row), `|` escaped for Markdown."""
    if value is None:
        return ""
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
