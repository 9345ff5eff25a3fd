"""The audit `decisions` rows of a routed day, and the policy checks that gate routing."""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import polars as pl

from hitl_gate.core.arrow_export import arrow_table
from hitl_gate.core.database import insert_new_rows, registered
from hitl_gate.core.domain import DomainConfig
from policies.capacity import own_rows
from policies.model import Policy

DECISION_COLUMNS = [
    "domain", "case_id", "partition_date", "event_time", "source_file", "source_sha256",
    "source_row", "contract_version", "contract_digest", "feature_service", "feature_digest",
    "model_name", "model_version", "model_run_id", "model_artifact_digest", "pd", "score",
    "risk_band", "reason_codes", "policy_version", "policy_digest", "route", "route_rule_id",
    "route_reason_code", "rules_fired", "review_queue", "review_priority", "run_id", "decided_at",
    "proposed_route", "route_override", "qa_sample", "qa_probability", "review_deferred",
]  # fmt: skip


# The routed column each `decisions` column is taken from, where the names differ (the case
# id and event time are the domain's).
_TAKEN_FROM = {
    "source_file": "_source_file",
    "source_sha256": "_source_sha256",
    "source_row": "_source_row",
    "contract_version": "_contract_version",
    "contract_digest": "_contract_digest",
}


class InvalidPolicy(Exception):
    """The policy in force does not validate on the day's cases: nothing is routed."""

    def __init__(self, policy: Policy, problems: list[str]) -> None:
        super().__init__(f"policy {policy.version} is invalid and was not applied")
        self.policy = policy
        self.problems = problems


def policy_errors(policy: Policy, cases: pl.DataFrame) -> list[str]:
    """Validation problems plus analysis errors (unreachable rules): any of them blocks routing.

    The analysis sees the day's real cases too, so its overlap counts are about real data.
    """
    from policies.analysis import analyse_policy
    from policies.engine import validate_policy

    problems = validate_policy(policy, cases.schema)
    if problems:
        return problems
    analysis = analyse_policy(policy, dict(cases.schema), cases)
    return [f.message for f in analysis.errors]


def raise_for_policy_errors(policy: Policy, cases: pl.DataFrame) -> None:
    """Raise `InvalidPolicy`, listing the problems, if the policy does not validate on `cases`."""
    problems = policy_errors(policy, cases)
    if problems:
        raise InvalidPolicy(policy, problems)


def decision_rows(
    domain: DomainConfig, routed: pl.DataFrame, run_id: str, now: datetime
) -> pl.DataFrame:
    """The audit `decisions` rows (`DECISION_COLUMNS`) of routed cases.

    Carried copies are left out: a case's decision belongs to its own day, recorded once.
    Made of the routed columns themselves, not by `select`: Polars' engine first cuts every
    column of a frame into the same chunks, and a routed slice's columns (from several
    stored stages) are cut at different rows, so a `select` copied the decisions' columns
    and more (+0.7 GB and 1 CPU s at a million cases) for rows that only rename them.
    """
    own = own_rows(routed)
    columns = pl.select(
        pl.repeat(domain.name, own.height, dtype=pl.String).alias("domain"),
        pl.repeat(run_id, own.height, dtype=pl.String).alias("run_id"),
        pl.repeat(now, own.height).alias("decided_at"),
    ).to_dict()
    columns["case_id"] = own.get_column(domain.case_id).cast(pl.String)
    columns["event_time"] = own.get_column(domain.event_time)
    return pl.DataFrame(
        [
            (
                columns[name] if name in columns else own.get_column(_TAKEN_FROM.get(name, name))
            ).alias(name)
            for name in DECISION_COLUMNS
        ]
    )


def record_policy_version(
    con: duckdb.DuckDBPyConnection, domain: DomainConfig, policy: Policy, now: datetime
) -> None:
    """The policy's text and digest in `policy_versions` (once per digest)."""
    insert_new_rows(
        con,
        "policy_versions",
        pl.DataFrame(
            {
                "policy_digest": [policy.digest],
                "policy_version": [policy.version],
                "domain": [domain.name],
                "owner": [policy.owner],
                "effective_date": [policy.effective_date],
                "policy_text": [policy.text],
                "first_used_at": [now],
            }
        ),
    )


def delete_decisions(
    con: duckdb.DuckDBPyConnection, domain: DomainConfig, days: list[date]
) -> None:
    """Remove the days' `decisions` rows, in the caller's transaction (a re-routed day)."""
    con.execute(
        "DELETE FROM decisions WHERE domain = ? AND partition_date IN (SELECT unnest(?::DATE[]))",
        [domain.name, days],
    )


def insert_decisions(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> None:
    """Add `decision_rows` to `decisions` in `case_id` order, in the caller's transaction; a
    case recorded twice fails (the table keys a case once).

    In `case_id` order because DuckDB's commit of the two keys' index entries (the primary
    key and `decisions_case_id`) costs about six times as much for ids in random order (at a
    million decisions 6.3 against 1.0 CPU s); the table's order is the order the seal logs
    the decisions in, the same whether the day was routed whole or in slices
    (`routing.key_order`).

    The rows reach DuckDB as Polars holds them (Arrow string views, which DuckDB reads as
    VARCHAR, each column in its own chunks): `to_arrow()`'s default converts every text
    column, and the lists of texts, to Arrow's large strings, a copy of all their bytes while
    the insert runs (0.7 GB of the step's 2.4 GB at a million decisions), and any
    `to_arrow()` copies the columns whose chunks are cut at other rows than the others'.
    """
    if not rows.get_column("case_id").is_sorted():  # sorting copies every column
        rows = rows.sort("case_id")
    arrow = arrow_table(rows)  # each column's chunks as they are (`core.arrow_export`)
    with registered(con, "incoming_decisions", arrow):
        con.execute("INSERT INTO decisions BY NAME SELECT * FROM incoming_decisions")
