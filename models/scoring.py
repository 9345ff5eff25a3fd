"""Score cases with the registered champion: PD, points score, risk band and reason codes.

Every scored row carries the model name, resolved version, run id and a digest of the model
artefact bytes: the registry alias moves over time and keeps no history, so the decision row
itself must say which model made it.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from hitl_gate.core.domain import ModelConfig
from models.calibration import PlattCalibration
from models.mlflow_store import configure, tracking_uri
from models.scorecard import contributions_from_matrix, feature_matrix, model_features

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

MAX_REASON_CODES = 4
# Points scale: 600 points at good:bad odds of 1:1, 20 more points each time the odds double.
BASE_POINTS = 600.0
POINTS_TO_DOUBLE_ODDS = 20.0
# PD is clipped before the log-odds so a saturated probability still gets a finite score.
PD_EPSILON = 1e-12
# The columns `score_frame` adds after the case id, with their types: what a policy may use.
SCORE_SCHEMA: dict[str, pl.DataType] = {
    "pd": pl.Float64(),
    "pd_calibrated": pl.Float64(),
    "score": pl.Int64(),
    "risk_band": pl.String(),
    "reason_codes": pl.List(pl.String()),
    "reason_texts": pl.List(pl.String()),
    "model_name": pl.String(),
    "model_version": pl.String(),
    "model_run_id": pl.String(),
    "model_artifact_digest": pl.String(),
}


@dataclass(frozen=True)
class ChampionModel:
    """A loaded model version plus the identity every decision row records."""

    name: str
    version: str
    run_id: str
    model_uri: str
    pyfunc: Any
    artifact_digest: str
    pipeline: Pipeline
    family: str = "logistic_scorecard"
    calibration: PlattCalibration = PlattCalibration()
    # Training PD distribution (models.drift.reference_bins rows); empty for old versions.
    reference_bins: tuple[dict[str, Any], ...] = ()

    @property
    def features(self) -> list[str]:
        """The model's input columns, in fitted order."""
        return model_features(self.pipeline)

    def predict_pd(self, features: pl.DataFrame) -> np.ndarray:
        """PD of the bad class through the pyfunc (the served model), NaN-safe, any row count."""
        import pandas as pd

        if features.height == 0:
            return np.empty(0, dtype=np.float64)
        names = self.features
        frame = pd.DataFrame(feature_matrix(features, names), columns=names, copy=False)
        return np.asarray(self.pyfunc.predict(frame), dtype=np.float64)[:, 1]


def artifact_digest(model_dir: Path) -> str:
    """SHA-256 over every file under `model_dir`: sorted relative path, size and bytes.

    Path and size are framed into the hash so that moving bytes between files cannot give
    the same digest.
    """
    digest = hashlib.sha256()
    root = Path(model_dir)
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    for relative in sorted(files):
        data = files[relative].read_bytes()
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def load_champion(model_name: str, mlflow_dir: Path, alias: str = "champion") -> ChampionModel:
    """Resolve `alias` to a version once, then load and fingerprint exactly that version.

    The alias is resolved first and the numbered URI `models:/<name>/<version>` is loaded, so
    an alias moved mid-load cannot pair one version's number with another's bytes.
    """
    client = configure(mlflow_dir)
    version = client.get_model_version_by_alias(model_name, alias)
    return load_model_version(model_name, mlflow_dir, str(version.version))


def load_model_version(model_name: str, mlflow_dir: Path, version: str) -> ChampionModel:
    """Load and fingerprint the numbered version `models:/<name>/<version>` (e.g. the version a
    recorded decision names). The artefacts are downloaded once; the digest is taken over the
    same files the pyfunc loads."""
    import mlflow.artifacts
    import mlflow.pyfunc

    client = configure(mlflow_dir)
    record = client.get_model_version(model_name, version)
    model_uri = f"models:/{model_name}/{record.version}"
    uri = tracking_uri(mlflow_dir)
    with tempfile.TemporaryDirectory(prefix="hitl-model-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=tmp, tracking_uri=uri, registry_uri=uri
            )
        )
        digest = artifact_digest(local)
        pyfunc = mlflow.pyfunc.load_model(str(local))
    meta = pyfunc.metadata.metadata or {}
    return ChampionModel(
        name=model_name,
        version=str(record.version),
        run_id=str(record.run_id),
        model_uri=model_uri,
        pyfunc=pyfunc,
        artifact_digest=digest,
        pipeline=pyfunc.get_raw_model(),
        family=str(meta.get("model_family", "logistic_scorecard")),
        calibration=PlattCalibration(**meta.get("calibration", {})),
        reference_bins=tuple(meta.get("reference_bins", ())),
    )


def alias_is_set(model_name: str, mlflow_dir: Path, alias: str) -> bool:
    """True when `alias` points at a version of `model_name` (e.g. a challenger exists)."""
    from models.registry import alias_version

    return alias_version(configure(mlflow_dir), model_name, alias) is not None


def promote(model_name: str, version: str, mlflow_dir: Path, alias: str = "champion") -> None:
    """Point `alias` at `version` (a deliberate, human-approved step); the version must exist."""
    client = configure(mlflow_dir)
    client.get_model_version(model_name, str(version))
    client.set_registered_model_alias(model_name, alias, str(version))


def points(pd_: np.ndarray) -> np.ndarray:
    """Score = 600 + 20/ln 2 * ln((1 - pd) / pd), rounded: higher means safer."""
    p = np.clip(pd_, PD_EPSILON, 1.0 - PD_EPSILON)
    return np.rint(BASE_POINTS + POINTS_TO_DOUBLE_ODDS / math.log(2) * np.log((1.0 - p) / p))


def band_index(pd_: np.ndarray, bands: dict[str, float]) -> np.ndarray:
    """Index of the first band whose upper bound is >= pd; the last band takes the rest."""
    bounds = np.array(list(bands.values()), dtype=np.float64)
    if len(bounds) == 0 or np.any(np.diff(bounds) <= 0):
        raise ValueError(f"model bands must be non-empty and strictly ascending: {bands}")
    return np.minimum(np.searchsorted(bounds, pd_, side="left"), len(bounds) - 1)


def top_reasons(contrib: np.ndarray, features: list[str], model_cfg: ModelConfig) -> np.ndarray:
    """(n x 4) feature indices by descending positive contribution, -1 where none remain.

    Only features with a declared reason code qualify, and only contributions above zero:
    a feature that lowers the risk is never given as a reason for it.
    """
    coded = np.array([f in model_cfg.reason_codes for f in features], dtype=bool)
    ranked_values = np.where(coded & (contrib > 0), contrib, -np.inf)
    k = min(MAX_REASON_CODES, len(features))
    order = np.argsort(-ranked_values, axis=1, kind="stable")[:, :k]
    keep = np.take_along_axis(ranked_values, order, axis=1) > 0
    return np.where(keep, order, -1)


def _reason_lists(top: np.ndarray, lookup: list[str]) -> pl.Series:
    """List(String) per row from the index matrix, dropping the -1 padding.

    Built as one Arrow list array (offsets + gathered values): reasons are sorted by
    contribution, so the valid entries of each row are a prefix and row order is kept.
    Polars `list.eval` over the same data is about 100x slower.
    """
    import pyarrow as pa

    valid = top >= 0
    offsets = np.zeros(top.shape[0] + 1, dtype=np.int64)
    np.cumsum(valid.sum(axis=1), out=offsets[1:])
    values = pa.array(lookup, type=pa.large_string()).take(pa.array(top[valid]))
    return pl.Series(pa.LargeListArray.from_arrays(pa.array(offsets), values))


def score_frame(
    champion: ChampionModel, features: pl.DataFrame, model_cfg: ModelConfig, case_id: str
) -> pl.DataFrame:
    """One row per input row: the case id, PD, points score, risk band, reasons and model identity.

    `pd` is the champion pyfunc's probability of the positive (bad) class; `pd_calibrated` is
    that PD through the version's Platt map fitted on the validation window (same ranking,
    level matched to the most recent outcomes). `score` is on a
    points scale with 600 at odds 1:1 and 20 points to double the odds (PDO 20), so it falls
    as PD rises. `risk_band` is the first of `model_cfg.bands` whose upper bound is >= pd.
    `reason_codes` / `reason_texts` name up to four features with the largest positive
    contribution to the logit, from the exact additive decomposition of the scorecard.
    """
    names = champion.features
    pd_ = champion.predict_pd(features)
    contrib, _ = contributions_from_matrix(champion.pipeline, feature_matrix(features, names))
    top = top_reasons(contrib, names, model_cfg)
    codes = [model_cfg.reason_codes[f].code if f in model_cfg.reason_codes else "" for f in names]
    texts = [model_cfg.reason_codes[f].text if f in model_cfg.reason_codes else "" for f in names]
    band_names = pl.Series(list(model_cfg.bands), dtype=pl.String)
    return pl.DataFrame(
        {
            case_id: features[case_id],
            "pd": pl.Series(pd_, dtype=pl.Float64),
            "pd_calibrated": pl.Series(champion.calibration.apply(pd_), dtype=pl.Float64),
            "score": pl.Series(points(pd_), dtype=pl.Float64).cast(pl.Int64),
            "risk_band": band_names.gather(pl.Series(band_index(pd_, model_cfg.bands))),
            "reason_codes": _reason_lists(top, codes),
            "reason_texts": _reason_lists(top, texts),
        }
    ).with_columns(
        pl.lit(champion.name, dtype=pl.String).alias("model_name"),
        pl.lit(champion.version, dtype=pl.String).alias("model_version"),
        pl.lit(champion.run_id, dtype=pl.String).alias("model_run_id"),
        pl.lit(champion.artifact_digest, dtype=pl.String).alias("model_artifact_digest"),
    )


def shadow_frame(
    challenger: ChampionModel,
    champion_scores: pl.DataFrame,
    features: pl.DataFrame,
    model_cfg: ModelConfig,
    case_id: str,
) -> pl.DataFrame:
    """The challenger's PD and band next to the champion's, per case; nothing else.

    Only PD and band: the challenger has no exact reason codes and its output is never acted
    on, so nothing downstream of routing may see it. Rows follow `champion_scores` by case id.
    """
    pd_ = challenger.predict_pd(features)
    bands = pl.Series(list(model_cfg.bands), dtype=pl.String)
    shadow = pl.DataFrame(
        {
            case_id: features[case_id],
            "challenger_pd": pl.Series(pd_, dtype=pl.Float64),
            "challenger_band": bands.gather(pl.Series(band_index(pd_, model_cfg.bands))),
        }
    )
    return (
        champion_scores.select(
            case_id,
            pl.col("model_name"),
            pl.col("model_version").alias("champion_version"),
            pl.col("pd").alias("champion_pd"),
            pl.col("risk_band").alias("champion_band"),
        )
        .join(shadow, on=case_id, how="inner")
        .with_columns(
            pl.lit(challenger.version, dtype=pl.String).alias("challenger_version"),
            pl.lit(challenger.run_id, dtype=pl.String).alias("challenger_run_id"),
            pl.lit(challenger.artifact_digest, dtype=pl.String).alias("challenger_artifact_digest"),
        )
    )


def compare_shadow(shadow: pl.DataFrame) -> dict[str, float]:
    """Champion vs challenger: band agreement, mean PD difference, Spearman rank correlation.

    Spearman rather than Pearson: policy thresholds act on ranks and bands, and PDs of two
    model families differ in scale far more than in order.
    """
    if shadow.height == 0:
        return {"cases": 0, "band_agreement": math.nan, "mean_pd_diff": math.nan,
                "rank_correlation": math.nan}  # fmt: skip
    stats = shadow.select(
        pl.len().alias("cases"),
        (pl.col("champion_band") == pl.col("challenger_band")).mean().alias("band_agreement"),
        (pl.col("challenger_pd") - pl.col("champion_pd")).mean().alias("mean_pd_diff"),
        pl.corr("champion_pd", "challenger_pd", method="spearman").alias("rank_correlation"),
    ).row(0, named=True)
    return {k: (float(v) if v is not None else math.nan) for k, v in stats.items()}
