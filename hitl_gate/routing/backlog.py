"""The review backlog a run inherits: cases deferred on earlier days and still waiting."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from hitl_gate.core.database import OpenConnection
from hitl_gate.core.domain import DomainConfig
from policies.capacity import own_rows
from policies.control import review_backlog


def load_backlog(
    domain: DomainConfig, connect: OpenConnection, routed_folder: Path, first: date
) -> pl.DataFrame:
    """The stored routed rows of cases deferred before `first` and still waiting for review.

    Rows come from their own day's stored partition in `routed_folder` (exactly as they were
    routed, never re-routed); the audit database says which cases still wait
    (`review_backlog`).
    """
    with connect() as con:
        waiting = review_backlog(con, domain.name, first)
    if waiting.height == 0:
        return pl.DataFrame()
    frames = []
    for (day,), ids in waiting.group_by("partition_date", maintain_order=True):
        path = routed_folder / f"{day}.parquet"
        if not path.exists():
            continue  # a partition removed by hand: nothing to carry, the audit DB still has it
        stored = own_rows(pl.read_parquet(path))
        wanted = stored.get_column(domain.case_id).cast(pl.String).is_in(ids["case_id"].implode())
        frames.append(stored.filter(wanted))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
