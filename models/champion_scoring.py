"""Scoring a day's cases with the champion, the challenger in shadow, and the audit rows.

The `risk_scores` asset feeds `DayScoring` one slice of cases at a time (memory stays bounded
by the slice) and records the outcome with `record_scoring`. The champion is resolved once per
run, so every row of the day names the same model version, run and artefact digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import insert_new_rows, replace_partition_slice
from hitl_gate.core.domain import DomainConfig
from models.scoring import ChampionModel, compare_shadow, score_frame, shadow_frame


class StaleFeatureService(ValueError):
    """The features were served for another model version than the champion scoring them."""


@dataclass(frozen=True)
class Scorers:
    """The champion that decides, and the challenger scored in shadow (if the alias is set)."""

    champion: ChampionModel
    challenger: ChampionModel | None = None

    def resolved(self) -> dict[str, str | None]:
        """The version each alias resolved to for this run (None: the alias is unset)."""
        from models.registry import CHALLENGER, CHAMPION

        challenger = self.challenger.version if self.challenger else None
        return {CHAMPION: self.champion.version, CHALLENGER: challenger}


def load_challenger(model_name: str, mlflow_dir: Path) -> ChampionModel | None:
    """The model behind the `challenger` alias, or None while the alias is not set."""
    from models.registry import CHALLENGER
    from models.scoring import alias_is_set, load_champion

    if not alias_is_set(model_name, mlflow_dir, CHALLENGER):
        return None
    return load_champion(model_name, mlflow_dir, alias=CHALLENGER)


def load_scorers(model_name: str, mlflow_dir: Path) -> Scorers:
    """The champion and (when its alias is set) the challenger, each resolved once.

    Check the result with `models.alias_audit.require_reviewed_aliases` before scoring: the
    registry alone cannot tell a reviewed promotion from a click in the MLflow UI.
    """
    from models.scoring import load_champion

    return Scorers(load_champion(model_name, mlflow_dir), load_challenger(model_name, mlflow_dir))


def check_feature_services(
    used: Sequence[str], domain: DomainConfig, champion: ChampionModel
) -> None:
    """Raise `StaleFeatureService` when features came from another version's service.

    That happens when the champion alias moved between retrieving the features and scoring
    them; the partition must be re-run, never scored with mismatched inputs.
    """
    from features.services import foreign_services

    foreign = foreign_services(list(used), domain, champion.name, champion.version)
    if foreign:
        raise StaleFeatureService(
            f"features were served by {foreign}, not by the feature service of "
            f"{champion.name} v{champion.version}: the champion moved after "
            "case_features ran; re-run the partition"
        )


@dataclass
class DayScoring:
    """Scores slices of one run's cases and keeps what the run reports and records."""

    scorers: Scorers
    domain: DomainConfig
    run_id: str
    scored_at: datetime
    rows: int = 0
    pd_sum: float = 0.0
    calibrated_sum: float = 0.0
    _bands: list[pl.DataFrame] = field(default_factory=list)
    _shadows: list[pl.DataFrame] = field(default_factory=list)

    def score(self, features: pl.DataFrame) -> pl.DataFrame:
        """The champion's scores of a slice (with its partition day); the challenger's aside."""
        model, case_id = self.domain.model, self.domain.case_id
        scores = score_frame(self.scorers.champion, features, model, case_id).with_columns(
            features["partition_date"]
        )
        if self.scorers.challenger is not None:
            self._shadows.append(self._shadow_rows(self.scorers.challenger, scores, features))
        self.rows += scores.height
        self.pd_sum += float(scores["pd"].sum() or 0.0)
        self.calibrated_sum += float(scores["pd_calibrated"].sum() or 0.0)
        self._bands.append(scores.group_by("risk_band").len())
        return scores

    def _shadow_rows(
        self, challenger: ChampionModel, scores: pl.DataFrame, features: pl.DataFrame
    ) -> pl.DataFrame:
        """Audit rows of the challenger's shadow scores for the cases of `scores`, never routed."""
        case_id = self.domain.case_id
        shadow = shadow_frame(challenger, scores, features, self.domain.model, case_id)
        return shadow.join(scores.select(case_id, "partition_date"), on=case_id).select(
            pl.lit(self.domain.name).alias("domain"),
            pl.col(case_id).alias("case_id"),
            pl.exclude(case_id),
            pl.lit(self.run_id).alias("run_id"),
            pl.lit(self.scored_at).alias("scored_at"),
        )

    def shadow(self) -> pl.DataFrame | None:
        """Every shadow row of the run, or None without a challenger."""
        if self.scorers.challenger is None:
            return None
        return pl.concat(self._shadows, how="vertical")

    @property
    def mean_pd(self) -> float:
        return self.pd_sum / self.rows if self.rows else 0.0

    @property
    def mean_pd_calibrated(self) -> float:
        return self.calibrated_sum / self.rows if self.rows else 0.0

    def band_counts(self) -> pl.DataFrame:
        """Cases per risk band over every slice (risk_band, len)."""
        return (
            pl.concat(self._bands).group_by("risk_band").agg(pl.col("len").sum()).sort("risk_band")
        )

    def challenger_summary(self) -> dict[str, object]:
        """The challenger and how its shadow scores compare with the champion's."""
        challenger = self.scorers.challenger
        shadow = self.shadow()
        if challenger is None or shadow is None:
            return {"challenger": "none"}
        return {
            "challenger": f"{challenger.name} v{challenger.version} ({challenger.family})",
            **{f"shadow_{k}": v for k, v in compare_shadow(shadow).items()},
        }


def record_scoring(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    days: Sequence[date],
    champion: ChampionModel,
    shadow: pl.DataFrame | None,
) -> None:
    """Record the champion's reference bins and identity; replace the days' shadow scores.

    Shadow rows are replaced even without a challenger, so a rerun never leaves stale ones.
    """
    if champion.reference_bins:
        insert_new_rows(
            con,
            "model_reference_bins",
            pl.DataFrame(list(champion.reference_bins)).with_columns(
                pl.lit(champion.name).alias("model_name"),
                pl.lit(champion.version).alias("model_version"),
            ),
        )
    replace_partition_slice(
        con,
        "shadow_scores",
        shadow if shadow is not None else pl.DataFrame(),
        domain,
        list(days),
    )
    insert_new_rows(
        con,
        "model_versions",
        pl.DataFrame(
            {
                "model_name": [champion.name],
                "model_version": [champion.version],
                "model_run_id": [champion.run_id],
                "artifact_digest": [champion.artifact_digest],
                "first_used_at": [datetime.now(UTC)],
            }
        ),
    )
