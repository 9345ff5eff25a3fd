"""A stage that writes day-partitioned lineage seals it itself when its run has no end-of-run
seal (`hitl_gate.audit.partial_runs`): e.g. `hitl run --ingest-only`, or the ingestion stages
materialised from the Dagster UI, with segments on."""

from __future__ import annotations

from collections.abc import Set

from dagster import AssetExecutionContext, AssetKey

from assets.common import stage_key
from assets.partitions import partition_days
from hitl_gate.audit.partial_runs import partial_run_id
from hitl_gate.audit.run_seal import seal_days_through_segment
from hitl_gate.audit.seal import SealResult
from hitl_gate.core.domain import DomainConfig
from pipelines.resources import AuditDatabase

RUN_SEAL_STAGE = "audit_lineage"  # the stage that seals a run's days at its end


def run_assets(context: AssetExecutionContext) -> Set[AssetKey]:
    """The assets the run materialises: its selection, else those of its job as executed (a
    run of a subset of assets executes the job subset to them; `materialize` records an empty
    selection)."""
    selection = context.run.asset_selection
    if selection:
        return selection
    return context.job_def.asset_layer.selected_asset_keys


def seal_unless_run_seals(
    context: AssetExecutionContext, domain: DomainConfig, stage: str, audit_db: AuditDatabase
) -> SealResult | None:
    """With segments on, seal the domain's days' unseen rows through a segment of this
    stage's own, unless the run also materialises the domain's end-of-run seal, whose pick
    takes them (None: nothing done). On the single chain every seal takes every unseen row,
    so the next run's seal covers them, whatever its days."""
    segments = audit_db.segments()
    if segments is None or stage_key(domain, RUN_SEAL_STAGE) in run_assets(context):
        return None
    return seal_days_through_segment(
        audit_db.connect,
        segments,
        domain.name,
        partition_days(context),
        partial_run_id(context.run.run_id, stage),
        audit_db.signing_key(),
        audit_db.checkpoints,
        memory_limit=audit_db.seal_memory_limit,
        witness=audit_db.witness(),
        replica=audit_db.replica(),
        chain=False,  # insert-once rows: every run's seal takes them on the single chain
    )
