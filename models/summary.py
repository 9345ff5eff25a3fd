"""What a person reads after `hitl train`: the newest version's quality, its leakage check and
which version decides cases, from the registry alone (so it works for any training run)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from models.leakage import LEAKAGE_TAG, PASSED
from models.mlflow_store import configure
from models.registry import CHAMPION, alias_version


def _fmt(metrics: dict[str, float], name: str, pattern: str) -> str:
    value = metrics.get(name)
    return "n/a" if value is None else format(value, pattern)


def latest_version_summary(model_name: str, mlflow_dir: Path) -> list[str]:
    """Lines describing the newest registered version of `model_name` (empty when none)."""
    client = configure(mlflow_dir)
    versions = client.search_model_versions(f"name = '{model_name.replace(chr(39), chr(39) * 2)}'")
    if not versions:
        return []
    newest = max(versions, key=lambda v: int(v.version))
    run = client.get_run(cast(str, newest.run_id))
    metrics, params = run.data.metrics, run.data.params
    tag = newest.tags.get(LEAKAGE_TAG, PASSED)
    champion = alias_version(client, model_name, CHAMPION)
    auc, ks = _fmt(metrics, "validation_auc", ".3f"), _fmt(metrics, "validation_ks", ".3f")
    brier = _fmt(metrics, "validation_brier", ".4f")
    lines = [
        f"{model_name} v{newest.version}: validation AUC {auc}, KS {ks}, Brier {brier}"
        f" (train AUC {_fmt(metrics, 'train_auc', '.3f')}); bad rate "
        f"{float(params.get('train_bad_rate', 'nan')):.2%} train / "
        f"{float(params.get('validation_bad_rate', 'nan')):.2%} validation",
        f"leakage check: {tag}",
    ]
    if champion == str(newest.version):
        lines.append(f"champion: v{champion} (this version)")
    elif tag != PASSED:
        lines.append(
            f"champion: {'v' + champion if champion else 'none'}; v{newest.version} was NOT "
            "promoted: declare the flagged columns as outcomes and retrain, or promote it "
            "explicitly with an override reason (docs/model.md, leakage gate)"
        )
    else:
        lines.append(
            f"champion: {'v' + champion if champion else 'none'} (promote v{newest.version} with "
            "`hitl model promote` after review)"
        )
    return lines
