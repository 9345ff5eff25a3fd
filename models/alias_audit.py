"""Scoring uses a registry alias only where the audit log says a reviewed promotion put it.

MLflow's UI (its "promote" button, the alias editor) and any `MlflowClient` can move
`champion` or `challenger` with no signature and no record. The audited path is `hitl model
promote`, a model owner's signed act recorded in `model_promotions` (`models.registry`). So
before a run scores anything, the versions the aliases resolved to are compared with the last
recorded move of each alias; any difference means the registry was changed outside review, and
the scoring step fails naming both versions and how to fix it. Nothing is scored, so no
decision ever rests on an unreviewed model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import duckdb

from models.registry import ALIASES


class UnreviewedAliasMove(RuntimeError):
    """An alias points somewhere no recorded promotion put it."""


@dataclass(frozen=True)
class RecordedMove:
    """The last recorded move of one alias: where it left the alias, by whom, when."""

    to_version: str | None
    promoted_by: str
    promoted_at: datetime


def last_recorded_moves(con: duckdb.DuckDBPyConnection, model_name: str) -> dict[str, RecordedMove]:
    """Per alias, its newest `model_promotions` row (an alias never moved has no entry)."""
    has_table = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'model_promotions'"
    ).fetchall()[0][0]
    if not has_table:
        return {}
    rows = con.execute(
        "SELECT alias, to_version, promoted_by, promoted_at FROM model_promotions "
        "WHERE model_name = ? "
        "QUALIFY row_number() OVER (PARTITION BY alias ORDER BY promoted_at DESC) = 1",
        [model_name],
    ).fetchall()
    return {
        str(alias): RecordedMove(None if to is None else str(to), str(by), at)
        for alias, to, by, at in rows
    }


def require_reviewed_aliases(
    con: duckdb.DuckDBPyConnection, model_name: str, resolved: Mapping[str, str | None]
) -> None:
    """Raise `UnreviewedAliasMove` unless each alias resolved where its last record put it.

    `resolved` maps `champion` / `challenger` to the version the run loaded (None: unset). An
    alias with no record must be unset; one whose last record removed it must be unset too.
    """
    recorded = last_recorded_moves(con, model_name)
    problems = []
    for alias in ALIASES:
        live = resolved.get(alias)
        last = recorded.get(alias)
        expected = last.to_version if last else None
        if live == expected:
            continue
        said = (
            f"the last recorded promotion (model_promotions, by {last.promoted_by} at "
            f"{last.promoted_at.isoformat(timespec='seconds')}) set it to {_v(expected)}"
            if last
            else "no promotion of it was ever recorded"
        )
        problems.append(f"{model_name}@{alias} resolves to {_v(live)} in MLflow, but {said}")
    if problems:
        raise UnreviewedAliasMove(
            "; ".join(problems) + ". The alias was moved outside `hitl model promote` (e.g. in "
            "the MLflow UI), which nobody reviewed, so nothing is scored. Put it back where the "
            "record says, or move it with `hitl model promote NAME VERSION [--alias ALIAS] "
            "--signing-key KEY`, then re-run the partition."
        )


def _v(version: str | None) -> str:
    return "nothing (unset)" if version is None else f"v{version}"
