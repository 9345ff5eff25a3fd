"""`hitl demo`: the whole flow on each domain's sample, one review loop closed by a demo reviewer.

Every declared domain with a `sample:` section takes part, in the same Dagster instance, audit
database and review workspace: each in a process of its own, side by side (one per CPU core;
`HITL_DEMO_PARALLEL`, `hitl demo --jobs`), or one after the other (`--jobs 1`). Steps per
domain: land the sample as daily files; ingest, validate and featurise the quarter in one run;
train and register a model (only the first time: a champion is set only when none exists);
serve the features again through the champion's feature service, score, route, export review
batches and execute the quarter (ingestion is not repeated); then a clearly labelled DEMO
reviewer answers one batch, which goes through the same intake as a real reviewer's file.
Running it again changes nothing: files, batches, verdicts and executions are all idempotent,
and a run whose every stage already holds every day of the sample in this home's Dagster instance
is not started again (a second `make demo` takes seconds; `hitl run` re-runs days on purpose).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from hitl_gate.app.demo_data import prepare_landing
from hitl_gate.core.database import query_frame, scalar
from hitl_gate.core.db_lock import open_when_free
from hitl_gate.core.domain import DomainConfig, available_domains, load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HitlSettings

if TYPE_CHECKING:
    from dagster import AssetKey

INGEST_STAGES = ("raw_cases", "validated_cases", "case_features")
# What the pipeline run after training recomputes: the stages that depend on the champion.
# Features are served through the champion version's own feature service (before any model,
# the declared one), so `case_features` runs again; the files and validated cases of the
# quarter are the ingestion run's, unchanged by a model, and are not read and validated twice.
FIRST_CHAMPION_STAGE = "case_features"
DEMO_PREFIX = "demo-"  # every demo identity (app.demo_identities) starts with it
# What the domain processes' forkserver imports once before it forks them (side by side), on
# top of what a multiprocess run's step processes preload (`pipelines.executors.STEP_PRELOAD`:
# skops first, the code location, Great Expectations, Feast, MLflow's sklearn flavour, openpyxl,
# plotly): the submodules the demo's runs import lazily (Feast's DuckDB and SQLite stores and
# ibis, scikit-learn's estimators, MLflow's SQL stores and pyfunc, the stages' own modules).
# Like those, importing them must start no thread pool (tests/unit/app/test_domain_processes.py
# forks a child after this list and uses Polars in it). A module left out only costs time.
# Last, `hitl_gate.app.domain_warmup` does once what each domain process would repeat.
DOMAIN_PRELOAD = (
    "ibis",
    "feast.repo_operations",
    "feast.infra.offline_stores.duckdb",
    "feast.infra.online_stores.sqlite",
    "feast.infra.passthrough_provider",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "mlflow.pyfunc",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "pandera.polars",
    "great_expectations.expectations",
    "plotly.io",
    "hitl_gate.app.runner",
    "hitl_gate.quality.gx_suites",
    "hitl_gate.review.export.batches",
    "features.store",
    "models.scoring",
    "pkcs11",
    "hitl_gate.app.domain_warmup",
)


def domain_preload() -> tuple[str, ...]:
    """What the domain processes' forkserver imports: `STEP_PRELOAD`, then `DOMAIN_PRELOAD`."""
    from pipelines.executors import STEP_PRELOAD

    return (*STEP_PRELOAD, *DOMAIN_PRELOAD)


def champion_stages() -> tuple[str, ...]:
    """The daily stages from `case_features` on: what the demo's pipeline run materialises."""
    from assets.factory import PIPELINE_STAGES

    return PIPELINE_STAGES[PIPELINE_STAGES.index(FIRST_CHAMPION_STAGE) :]


def has_champion(domain: DomainConfig, paths: HitlPaths) -> bool:
    """Whether the domain's model already has a `champion` alias in the registry."""
    from mlflow.exceptions import MlflowException

    from models.mlflow_store import configure

    client = configure(paths.mlflow_dir)
    try:
        client.get_model_version_by_alias(domain.model.name, "champion")
    except MlflowException:
        return False
    return True


def all_days_materialised(
    paths: HitlPaths, asset_keys: Sequence[AssetKey], start: date, end: date
) -> bool:
    """Whether every asset of `asset_keys` has a materialisation of every day `start..end` in
    the home's Dagster instance: a run over those days would only repeat what is done."""
    from hitl_gate.app.runner import open_instance

    days = {(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)}
    with open_instance(paths) as instance:
        return all(days <= instance.get_materialized_partitions(key) for key in asset_keys)


def demo_domains(settings: HitlSettings) -> list[str]:
    """Every declared domain that ships a sample to land."""
    extra = settings.domains_dirs
    return [
        name for name in available_domains(extra) if load_domain(name, extra).sample is not None
    ]


def selected_domains(settings: HitlSettings, named: str | None) -> list[str]:
    """The domains `hitl demo --domain` names: one, or every demo domain for none or `demo`
    (the meaning `--domain demo` has on every command)."""
    return demo_domains(settings) if named in (None, "demo") else [named]


def demo_jobs(settings: HitlSettings, domains: int) -> int:
    """How many domains run at once: `settings.demo_parallel`, else one per domain and core."""
    return max(1, min(domains, settings.demo_parallel or os.cpu_count() or 1))


def run_demo(settings: HitlSettings, domain_names: list[str]) -> str:
    """Run the demo for each domain (`demo_jobs` at once); the summaries in the order of
    `domain_names`, then the checkpoint key and where everything is."""
    jobs = demo_jobs(settings, len(domain_names))
    if jobs == 1:
        prepare_demo_people(settings, domain_names)
        summaries = [run_domain_demo(settings, name) for name in domain_names]
    else:
        summaries = run_domains_at_once(settings, domain_names, jobs)
    outputs = outputs_summary(settings.paths, domain_names)
    return "\n\n".join([*summaries, checkpoint_key_summary(settings), outputs])


def prepare_demo_people(settings: HitlSettings, domain_names: list[str]) -> None:
    """The demo's reviewers and operators of every domain, registered with their keys."""
    from hitl_gate.app.demo_identities import ensure_demo_people

    domains = [load_domain(name, settings.domains_dirs) for name in domain_names]
    ensure_demo_people(settings.paths, domains)


def run_domains_at_once(settings: HitlSettings, domain_names: list[str], jobs: int) -> list[str]:
    """`run_domain_demo` for each domain in a process of its own (`app.domain_processes`),
    forked from a server that imported `domain_preload()` once for them all.

    The demo people and what every process would otherwise create on first use, at the same
    moment as another (`prepare_shared_state`), are created here first, while that server
    imports (`before_children`: both take seconds, Dagster's import among them, on the other
    core). The children draw no status line of their own (two would overwrite each other);
    this process draws one naming the running domains.
    """
    from hitl_gate.app.domain_processes import run_in_processes
    from hitl_gate.app.progress import domains_status

    def prepare() -> None:
        prepare_demo_people(settings, domain_names)
        prepare_shared_state(settings)

    calls = [(name, (settings, name, False)) for name in domain_names]
    target = f"{__name__}:{run_domain_demo.__name__}"
    with domains_status("hitl demo") as on_change:
        return run_in_processes(
            target, calls, jobs, on_change, preload=domain_preload(), before_children=prepare
        )


def prepare_shared_state(settings: HitlSettings) -> None:
    """Create the home's shared stores before processes use them at once.

    The Dagster instance's SQLite storages (run, event log index, schedules) are created by
    whoever opens the instance first, without a lock between processes; the checkpoint key
    (a token or a key file) is made on first use. The audit database's schema exists already
    (`ensure_demo_people` wrote to it). MLflow's tables and Feast's registry are created under
    lock files by whichever process comes first (`models.mlflow_store`, `features.store`), so
    this process need not import either (about 18 s).
    """
    from hitl_gate.app.runner import open_instance
    from hitl_gate.audit.keys import checkpoint_signer

    with open_instance(settings.paths):
        pass
    keys = settings.audit_keys
    if not (keys.pin_in_env or settings.audit_key_in_env):
        checkpoint_signer(settings.paths, keys)


def checkpoint_key_summary(settings: HitlSettings) -> str:
    """Where the checkpoint key is, and the public key an auditor pins (docs/key_custody.md).

    The laptop token (SoftHSM2, generated PIN) is opened to read its public key; a token or
    key the deployment injects a secret for is named only (`hitl audit public-key` shows it).
    """
    from hitl_gate.audit.keys import checkpoint_signer, public_key_hex

    keys = settings.audit_keys
    if keys.pin_in_env or settings.audit_key_in_env:
        return "Checkpoint key\n  configured by the deployment: hitl audit public-key"
    public = public_key_hex(checkpoint_signer(settings.paths, keys))
    where = (
        f"token {keys.token_label!r}, key {keys.key_label!r} ({keys.pkcs11_module})"
        if keys.signer == "token"
        else f"key file {settings.paths.audit_key_file}"
    )
    return "\n".join(
        [
            "Checkpoint key",
            f"  held in                  {where}",
            f"  public key               {public}",
            f"  pin it for verify        export HITL_AUDIT_TRUSTED_KEY={public}",
            "                           (outside the home: docs/key_custody.md)",
        ]
    )


def run_domain_demo(settings: HitlSettings, domain_name: str, progress: bool = True) -> str:
    """Run every step for one domain and return its summary (`progress`: a status line of
    each run on a terminal)."""
    from assets.common import stage_key
    from assets.factory import PIPELINE_STAGES
    from hitl_gate.app.runner import raise_for_failure, run_job
    from pipelines.jobs import daily_job_name, training_job_name

    paths = settings.paths
    domain = load_domain(domain_name, settings.domains_dirs)
    landing = prepare_landing(domain, paths.landing)
    start, end = date.fromisoformat(landing.first_day), date.fromisoformat(landing.last_day)
    daily = daily_job_name(domain)

    days = f"{domain.name} {start}..{end}"

    def label(text: str) -> str | None:
        return text if progress else None

    ingest_keys = [stage_key(domain, s) for s in INGEST_STAGES]
    if not all_days_materialised(paths, ingest_keys, start, end):
        ingest = run_job(
            settings,
            daily,
            start=start,
            end=end,
            only=ingest_keys,
            progress=label(f"{days} ingestion"),
        )
        raise_for_failure(ingest, "ingestion and features")
    if not has_champion(domain, paths):
        training = run_job(
            settings, training_job_name(domain), progress=label(f"{domain.name} training")
        )
        raise_for_failure(training, "training")
    if not all_days_materialised(
        paths, [stage_key(domain, s) for s in PIPELINE_STAGES], start, end
    ):
        pipeline = run_job(
            settings,
            daily,
            start=start,
            end=end,
            only=[stage_key(domain, s) for s in champion_stages()],
            progress=label(f"{days} pipeline"),
        )
        raise_for_failure(pipeline, "daily pipeline")
    reviewed = demo_review_one_batch(settings, domain)
    return summarise(settings, domain, landing.applications, reviewed)


def demo_review_one_batch(settings: HitlSettings, domain: DomainConfig) -> str:
    """DEMO REVIEWER: answer the first open batch (once) through the normal intake path, signed
    with its assignee's demo key."""
    from hitl_gate.app.demo_reviewer import answer_as_assignee, assign_if_unassigned
    from hitl_gate.app.runner import raise_for_failure, run_job
    from hitl_gate.review.intake.verdict_files import batch_partition
    from pipelines.jobs import review_loop_job_name

    paths, wait_s = settings.paths, settings.audit_lock_wait_seconds
    with open_when_free(paths.audit_db, True, wait_s) as con:
        answered = scalar(
            con,
            "SELECT min(batch_id) FROM verdicts WHERE domain = ? AND reviewer_id LIKE ?",
            [domain.name, f"{DEMO_PREFIX}%"],
        )
        if answered:
            return f"{answered} (already answered by a demo reviewer in an earlier run)"
        first = next(
            iter(
                con.execute(
                    "SELECT batch_id, queue, folder FROM review_batches WHERE domain = ? "
                    "ORDER BY batch_id LIMIT 1",
                    [domain.name],
                ).fetchall()
            ),
            None,
        )
    if first is None:
        return "no batch to review"
    batch_id, queue, folder = first
    inbox = paths.review / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    with open_when_free(paths.audit_db, False, wait_s) as con:
        assign_if_unassigned(con, domain, batch_id, queue)
        returned, person = answer_as_assignee(
            con, paths, batch_id, Path(folder), inbox / f"{batch_id}__returned.xlsx"
        )
    day = batch_partition(batch_id, domain)
    raise_for_failure(
        run_job(settings, review_loop_job_name(domain), start=day, end=day),
        "review loop",
    )
    return (
        f"{batch_id} (answered and signed by the labelled DEMO reviewer {person}: {returned.name})"
    )


def summarise(settings: HitlSettings, domain: DomainConfig, landed: int, reviewed: str) -> str:
    """Counts that must add up, and where every output is."""
    paths = settings.paths
    with open_when_free(paths.audit_db, True, settings.audit_lock_wait_seconds) as con:
        status = query_frame(
            con,
            "SELECT status, cases FROM case_status_summary WHERE domain = ? ORDER BY status",
            [domain.name],
        )
        routes = query_frame(
            con,
            "SELECT route, count(*) AS cases FROM decisions WHERE domain = ? GROUP BY ALL "
            "ORDER BY route",
            [domain.name],
        )
        example = scalar(
            con,
            "SELECT case_id FROM case_trace WHERE domain = ? AND verdict IS NOT NULL "
            "ORDER BY case_id LIMIT 1",
            [domain.name],
        )
    counts = dict(status.iter_rows())
    accounted = sum(counts.values())
    verdict = "(all)" if accounted == landed else "(MISMATCH)"
    lines = [
        f"hitl-gate demo: {domain.name}",
        f"  cases landed             {landed}",
        *(f"  {k:<24} {v}" for k, v in counts.items()),
        f"  accounted for            {accounted} {verdict}",
        "  routes: " + ", ".join(f"{r} {n}" for r, n in routes.iter_rows()),
        f"  reviewed batch           {reviewed}",
        f"  landing zone             {paths.landing / domain.landing_subdir}",
        f"  execution outbox         {paths.home / 'outbox' / domain.name}",
        f"  trace a case             .venv/bin/hitl audit trace {example or '<case id>'}",
    ]
    return "\n".join(lines)


def outputs_summary(paths: HitlPaths, domain_names: list[str]) -> str:
    """Where the shared outputs are, and what to do next."""
    lines = [
        "Outputs (shared by " + ", ".join(domain_names) + ")",
        *(f"  {name:<24} {path}" for name, path in _locations(paths).items()),
        "",
        "Next",
        "  make ui   (Dagster UI on http://127.0.0.1:3000, one asset group per domain)",
    ]
    return "\n".join(lines)


def _locations(paths: HitlPaths) -> dict[str, Path]:
    return {
        "audit database (DuckDB)": paths.audit_db,
        "review batches": paths.review / "batches",
        "verdict inbox": paths.review / "inbox",
        "verdict archive": paths.review / "archive",
        "MLflow store": paths.mlflow_dir / "mlflow.db",
        "Feast repository": paths.feast_dir,
        "asset storage": paths.warehouse,
        "Dagster home": paths.dagster_home,
    }
