"""A range of days a person gives (`--from`/`--to`, `--partition`/`--to`): one rule for every
command and every run that takes one, so a reversed range is refused in the same words."""

from __future__ import annotations

from datetime import date


def day_range(
    start: date, end: date | None, *, first: str = "--from", last: str = "--to"
) -> tuple[date, date]:
    """`start..end` (one day without `end`), refused when the range runs backwards."""
    end = end or start
    if end < start:
        raise SystemExit(f"{last} {end} is before {first} {start}: give the earlier day first")
    return start, end
