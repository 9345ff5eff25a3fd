"""Registry governance: which version holds which alias, who moved it, and which may be champion.

Aliases are the registry's only pointer to "the model in production" (`champion`) and "the
model watched in shadow" (`challenger`). MLflow keeps no history of alias moves, so every move
made through here is a signed act of a model owner (docs/people.md), written to the audit
database (`model_promotions`) with the signer, their key fingerprint, the signed payload and
signature, when, from which version and to which. Only model families with exact additive
reason codes may become champion: an adverse decision must be explainable by the model that
made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import polars as pl

from hitl_gate.core.database import audit_connection, insert_new_rows, query_frame
from hitl_gate.core.db_lock import open_when_free
from hitl_gate.core.settings import DEFAULT_LOCK_WAIT_SECONDS
from hitl_gate.identity.acts import IdentityError
from hitl_gate.identity.registry import RegistryError
from hitl_gate.identity.signatures import MODELS
from hitl_gate.identity.signed_acts import (
    SignedPayload,
    VerifiedAct,
    act_payload,
    check_signed_act,
    refuse_replay,
)
from hitl_gate.identity.store import load_registry
from models.mlflow_store import configure

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from features.services import ModelVersionRef

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)
FAMILY_TAG = "model_family"
SCORECARD = "logistic_scorecard"
GRADIENT_BOOSTING = "gradient_boosting"
# Families whose reason codes are an exact additive decomposition of their output.
CHAMPION_FAMILIES = frozenset({SCORECARD})
AUTO_FIRST_CHAMPION = "auto:first-training"
ACT_PROMOTE = "model_promote"
# Who may move an alias of a domain's model (docs/people.md).
MODEL_OWNER = "model_owner"
PROMOTE_ROLES = (MODEL_OWNER,)


class PromotionError(ValueError):
    """A promotion that governance refuses (unknown alias or version, ineligible family)."""


@dataclass(frozen=True)
class Promotion:
    """One alias move, as recorded in `model_promotions`."""

    model_name: str
    alias: str
    from_version: str | None
    to_version: str | None
    promoted_by: str
    reason: str | None
    promoted_at: datetime
    # The signed act (docs/people.md); None only for the automatic first champion.
    signer_fingerprint: str | None = None
    act_payload: str | None = None
    signature: str | None = None
    payload_sha256: str | None = None


def alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    """The version `alias` points at, or None when the alias (or the model) is unset."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def model_family(client: MlflowClient, model_name: str, version: str) -> str:
    """The family tag of a version; versions from before the tag existed are scorecards."""
    tags = client.get_model_version(model_name, version).tags
    return tags.get(FAMILY_TAG, SCORECARD)


def version_ref(client: MlflowClient, model_name: str, version: str) -> ModelVersionRef:
    """The registry's facts about one version that its feature service is built from.

    The model's input columns are the `features` parameter its training run logged (the
    columns the pyfunc signature names), so the service can be rebuilt from the registry alone.
    """
    from features.services import ModelVersionRef

    found = client.get_model_version(model_name, str(version))
    # Every version here was registered from a training run, so it has a run id.
    params = client.get_run(cast(str, found.run_id)).data.params
    inputs = tuple(f for f in params.get("features", "").split(",") if f)
    return ModelVersionRef(
        model_name=model_name,
        version=str(found.version),
        family=found.tags.get(FAMILY_TAG, SCORECARD),
        run_id=str(found.run_id),
        inputs=inputs,
    )


def alias_ref(model_name: str, mlflow_dir: Path, alias: str = CHAMPION) -> ModelVersionRef | None:
    """`version_ref` of the version `alias` points at; None before any version holds it."""
    client = configure(mlflow_dir)
    version = alias_version(client, model_name, alias)
    return None if version is None else version_ref(client, model_name, version)


def record_promotion(
    audit_db: Path, promotion: Promotion, lock_wait_s: float = DEFAULT_LOCK_WAIT_SECONDS
) -> None:
    """Append one alias move to the audit database (history is never rewritten), waiting up to
    `lock_wait_s` while another process (a run of another domain) holds the file."""
    row = pl.DataFrame(
        [promotion.__dict__],
        schema={
            "model_name": pl.String,
            "alias": pl.String,
            "from_version": pl.String,
            "to_version": pl.String,
            "promoted_by": pl.String,
            "reason": pl.String,
            "promoted_at": pl.Datetime("us", "UTC"),
            "signer_fingerprint": pl.String,
            "act_payload": pl.String,
            "signature": pl.String,
            "payload_sha256": pl.String,
        },
    )
    with open_when_free(audit_db, False, lock_wait_s) as con:
        insert_new_rows(con, "model_promotions", row)


def promotion_payload(
    domain: str,
    model_name: str,
    version: str | None,
    *,
    alias: str,
    reason: str | None = None,
    at: datetime | None = None,
) -> bytes:
    """What the model owner signs: the domain, the model, the alias and the version it will
    point at (None: the alias is removed)."""
    return act_payload(
        ACT_PROMOTE,
        at,
        domain=domain,
        model=model_name,
        alias=alias,
        version=None if version is None else str(version),
        reason=reason,
    )


def _verified_promotion(
    audit_db: Path, act: SignedPayload, domain: str, expected: dict[str, object], what: str
) -> VerifiedAct:
    """The promotion's signature checked against the registry in the audit database."""
    try:
        with audit_connection(audit_db) as con:
            verified = check_signed_act(
                load_registry(con),
                act,
                MODELS,
                expected=expected,
                roles=PROMOTE_ROLES,
                domain=domain,
                what=what,
            )
            refuse_replay(con, "model_promotions", act, what)
    except (IdentityError, RegistryError) as error:
        raise PromotionError(str(error)) from error
    return verified


def promote(
    model_name: str,
    version: str | None,
    *,
    alias: str,
    act: SignedPayload,
    domain: str,
    mlflow_dir: Path,
    audit_db: Path,
) -> Promotion:
    """Point `alias` at `version` (None removes the alias), signed by a model owner of `domain`.

    Refuses an unknown alias, a signature that is missing, invalid, by someone without the
    role or over another model, alias or version, a missing version, a champion of a family
    without exact reason codes, and removing the champion (scoring would have nothing to run).
    """
    if alias not in ALIASES:
        raise PromotionError(f"alias must be one of {ALIASES}, not {alias!r}")
    version = None if version is None else str(version)
    what = f"promotion of {model_name}@{alias} to v{version or '-'}"
    expected: dict[str, object] = {
        "act": ACT_PROMOTE,
        "domain": domain,
        "model": model_name,
        "alias": alias,
        "version": version,
    }
    verified = _verified_promotion(audit_db, act, domain, expected, what)
    client = configure(mlflow_dir)
    before = alias_version(client, model_name, alias)
    if version is None:
        if alias == CHAMPION:
            raise PromotionError("the champion alias cannot be removed, only moved")
        if before is not None:
            client.delete_registered_model_alias(model_name, alias)
    else:
        from mlflow.exceptions import MlflowException

        try:
            family = model_family(client, model_name, version)
        except MlflowException as exc:
            raise PromotionError(f"{model_name} has no version {version}") from exc
        if alias == CHAMPION and family not in CHAMPION_FAMILIES:
            raise PromotionError(
                f"{model_name} v{version} is a {family} model without exact reason codes; "
                f"it may be a challenger, not champion (eligible: {sorted(CHAMPION_FAMILIES)})"
            )
        client.set_registered_model_alias(model_name, alias, version)
    reason = verified.fields.get("reason")
    promotion = Promotion(
        model_name=model_name,
        alias=alias,
        from_version=before,
        to_version=version,
        promoted_by=verified.signer.person_id,
        reason=None if reason is None else str(reason),
        promoted_at=datetime.now(UTC),
        signer_fingerprint=verified.signer.fingerprint,
        act_payload=act.text,
        signature=act.signature,
        payload_sha256=act.payload_sha256,
    )
    record_promotion(audit_db, promotion)
    return promotion


def list_versions(model_name: str, mlflow_dir: Path) -> pl.DataFrame:
    """Every registered version: family, aliases, run id, validation AUC and creation time."""
    client = configure(mlflow_dir)
    versions = client.search_model_versions(f"name = '{_quoted(model_name)}'")
    # Search results carry no aliases in every store; the registered model always does.
    by_version: dict[str, list[str]] = {}
    if versions:
        for alias, number in client.get_registered_model(model_name).aliases.items():
            by_version.setdefault(str(number), []).append(alias)
    rows = []
    for v in sorted(versions, key=lambda v: int(v.version)):
        run = client.get_run(cast(str, v.run_id))
        rows.append(
            {
                "version": str(v.version),
                "family": v.tags.get(FAMILY_TAG, SCORECARD),
                "aliases": ",".join(sorted(by_version.get(str(v.version), []))),
                "validation_auc": run.data.metrics.get("validation_auc"),
                "run_id": v.run_id,
                "created_at": datetime.fromtimestamp(v.creation_timestamp / 1000, UTC),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "version": pl.String,
            "family": pl.String,
            "aliases": pl.String,
            "validation_auc": pl.Float64,
            "run_id": pl.String,
            "created_at": pl.Datetime("us", "UTC"),
        },
    )


def promotion_history(audit_db: Path, model_name: str) -> pl.DataFrame:
    """The recorded alias moves of `model_name`, oldest first (empty if none or no database)."""
    if not audit_db.exists():
        return pl.DataFrame()
    with audit_connection(audit_db, read_only=True) as con:
        tables = query_frame(con, "SELECT table_name FROM duckdb_tables()")
        if "model_promotions" not in tables["table_name"].to_list():
            return pl.DataFrame()
        return query_frame(
            con,
            "SELECT * FROM model_promotions WHERE model_name = ? ORDER BY promoted_at",
            [model_name],
        )


def _quoted(name: str) -> str:
    """Escape a model name for MLflow's filter string (it has no bound parameters)."""
    return name.replace("'", "''")
