"""Sensors: returned verdict files start the review loop for the day their batch belongs to."""

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from hitl_gate.domain import DomainConfig
from hitl_gate.review.intake import batch_partition, file_sha256, peek_batch_id, pending_files
from pipelines.jobs import review_loop_job_name
from pipelines.resources import ReviewWorkspace


def build_verdict_sensor(domain: DomainConfig) -> SensorDefinition:
    """Watch the review inbox; one run per new file, keyed by its SHA-256 (exactly once)."""

    @sensor(
        name=f"{domain.name}_verdict_inbox",
        job_name=review_loop_job_name(domain),
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Starts the review loop when a reviewer returns a verdict file to the inbox; the "
            "run key is the file's content hash, so a file is never ingested twice."
        ),
    )
    def verdict_inbox(context: SensorEvaluationContext, review: ReviewWorkspace):
        requests = []
        for path in pending_files(review.inbox_dir):
            batch_id = peek_batch_id(path)
            day = batch_partition(batch_id, domain) if batch_id else None
            if day is None:
                continue
            requests.append(
                RunRequest(
                    run_key=file_sha256(path),
                    partition_key=day.isoformat(),
                    tags={"hitl/verdict_file": path.name, "hitl/batch_id": batch_id},
                )
            )
        return requests or SkipReason("no new verdict files in the inbox")

    return verdict_inbox
