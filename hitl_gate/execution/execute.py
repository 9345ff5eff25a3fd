"""The execution stage of one run: final actions into `executions` once, notices, the outbox.

Slice by slice, so a step's memory is bounded by the slice, not the day: the routed cases come
in slices (`hitl_gate.core.slices`; one slice for a day of at most `slice_rows` cases), each
slice's final actions are computed, its new executions inserted and its actions handed to the
step's output sink. The notices and the outbox are then made from the `executions` table itself
(a run killed after the insert still gets them) in pages of the days' executions in case order,
so the notices are inserted, and the outbox rows written, in the order one whole-day query
gives. The entity keys the output seal may log are kept in a temporary table of the step's
connection (`step_keys`), asked by the seal one sealed slice at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.audit.seal import OwnedKeys, SealRefused, memory_limited
from hitl_gate.core.database import OpenConnection, insert_new_keys, query_frame, registered
from hitl_gate.core.day_files import StagedPartitions
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.settings import DEFAULT_SLICE_ROWS
from hitl_gate.core.slices import OutputSink, write_each
from hitl_gate.execution.adverse_action import adverse_actions
from hitl_gate.execution.final_actions import (
    final_actions,
    keep_executed,
    new_executions,
    slice_verdicts,
)
from hitl_gate.execution.outbox import OutboxWriter, write_reversal_requests
from hitl_gate.execution.sealed_inputs import ExecutionRefused, check_sealed_inputs
from hitl_gate.execution.step_keys import StepKeys
from hitl_gate.review.gold_cases import gold_case_ids
from hitl_gate.review.intake.conflicts import reversal_requests
from policies.capacity import own_rows
from policies.control import halt_state

InputSealer = Callable[[duckdb.DuckDBPyConnection], object]
OutputSealer = Callable[[duckdb.DuckDBPyConnection, OwnedKeys], object]
"""Seals the `executions` rows of the given entity keys on the connection that inserted them
(`sealed_inputs.output_sealer`); given `StepKeys.owns`."""

_DAYS = "domain = ? AND partition_date IN (SELECT unnest(?::DATE[]))"
_REASONS = "execution_reasons"  # per declined case: the route's and the reviewer's reason code
STEP_MEMORY_LIMIT: str | None = None
"""DuckDB's memory limit on the step's connection: none of its own (DuckDB's, 80% of the
machine), the output seal under the seal's limit. A 256MB limit flattened the step's peak
at 1M-2M cases a day (BENCHMARKS.md, final26) but the `executions` inserts pin that table's
indexes, which grow with the whole history, not the day: on the 10M home of session 25 (6.2M
executions) inserting 1M more under 256MB failed at commit (out of memory). A bound needs the
indexes' cost known first (lead, session 25)."""


@dataclass(frozen=True)
class ExecutedDays:
    """Each case's final action (`actions`: a frame, or the day files written slice by slice)
    and what this run changed in the audit DB.

    `outcomes`: cases per status and action. `refused`: cases not executed because a record
    they rely on is not in the sealed log as it is now (case id -> reason naming table, key and
    entry; `sealed_inputs`).
    """

    actions: pl.DataFrame | StagedPartitions
    outcomes: pl.DataFrame
    executed_now: int
    executed_total: int  # every execution of the run's days, in the table
    notices: int  # adverse-action notices of the days' executed declines
    reversals: pl.DataFrame
    refused: dict[str, str] = field(default_factory=dict)


@dataclass
class _Tally:
    """What the slices add up to: counts and refusals."""

    executed_now: int = 0
    outcomes: list[pl.DataFrame] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def execute_days(
    domain: DomainConfig,
    routed: pl.DataFrame | Iterable[pl.DataFrame],
    verdicts: pl.DataFrame | pl.LazyFrame,
    connect: OpenConnection,
    outbox: Path,
    days: list[date],
    *,
    run_id: str,
    sink: OutputSink | None = None,
    page_rows: int = DEFAULT_SLICE_ROWS,
    seal_inputs: InputSealer | None = None,
    seal_outputs: OutputSealer | None = None,
    memory_limit: str | None = STEP_MEMORY_LIMIT,
) -> ExecutedDays:
    """Execute the run's final actions exactly once and write the days' outbox files.

    `routed` (one frame, or the day's slices in order) holds at least `routed_columns`; its
    carried copies are left out, since a deferred case carried into a later day's review pool
    is executed and accounted for in its own day (its batch names that day), never in the day
    it was carried to. `verdicts` (a frame, or a scan of the stored day) are read per slice,
    its cases' only (`slice_verdicts`). Each case's action goes to `sink` (default: one frame
    in memory); `page_rows` is the most executions read back at once for the notices and the
    outbox.

    Before acting, `seal_inputs` (a seal limited to `sealed_inputs.RELIED_ON`) seals the
    run's new verdicts, opinions, resolutions, activations and halts; then every record the
    cases rely on is compared with the sealed log (`check_sealed_inputs`): a case whose
    records were forged or changed after sealing is refused, a tampered activation or halt
    refuses the domain (`ExecutionRefused`, raised on the first slice, before any insert).
    Without `seal_inputs` unsealed records refuse their cases too: nothing executes on a
    record the log does not hold.

    `seal_outputs` seals the executions (and their adverse-action notices) this step wrote
    before their connection closes: DuckDB lets one process write the file, so nobody inserts
    in between, and every other seal refuses new rows of both tables (`seal.STEP_OWNED`).
    Rows an interrupted run of this step left unsealed are sealed by a re-run only where it
    computes the same action, decider and reviewer for the case; any other unsealed execution
    (and its notice) stays refused as forged.

    `memory_limit` bounds DuckDB on the step's connection (None: DuckDB's own, 80% of the
    machine); give `seal_outputs` the same limit, or its seal sets its own while it runs.
    """
    if seal_inputs is not None:
        # A refused seal leaves the tampered rows unsealed: the check below refuses their cases.
        with connect() as con, suppress(SealRefused):
            seal_inputs(con)
    sink = sink or OutputSink(None)
    slices = [routed] if isinstance(routed, pl.DataFrame) else routed
    tally = _Tally()
    now = datetime.now(UTC)
    with connect() as con, memory_limited(con, memory_limit):
        halted = halt_state(con, domain.name).halted
        # Gold cases (review/gold.py) are never executed, whatever verdicts or routes say.
        gold = gold_case_ids(con, domain.name)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_REASONS} (case_id VARCHAR, "
            "route_reason_code VARCHAR, verdict_reason_code VARCHAR)"
        )
        sealable = StepKeys(con, domain.name)

        def execute_slice(part: pl.DataFrame) -> pl.DataFrame:
            return _execute_slice(
                con, domain, own_rows(part), verdicts, days, tally, sealable,
                halted=halted, gold=gold, run_id=run_id, now=now,
            )  # fmt: skip

        # One routed slice held at a time: a `for` loop kept the previous one (and its
        # actions) while the next was read.
        write_each(slices, execute_slice, sink)
        with OutboxWriter(outbox, days) as written:
            total, notices = _notices_and_outbox(
                con, domain, days, page_rows, written, gold, run_id=run_id, now=now
            )
            con.execute(f"DROP TABLE {_REASONS}")  # the notices' alone: not kept through the seal
            if seal_outputs is not None:
                seal_outputs(con, sealable.owns)
            reversals = reversal_requests(con, domain.name)
            written.commit()
    write_reversal_requests(reversals, outbox)
    outcomes = (
        pl.concat(tally.outcomes).group_by("status", "action").agg(pl.col("len").sum())
        .sort("status", "action")
    )  # fmt: skip
    return ExecutedDays(
        sink.result(), outcomes, tally.executed_now, total, notices, reversals, tally.refused
    )


def _notices_and_outbox(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    days: list[date],
    page_rows: int,
    written: OutboxWriter,
    gold: set[str],
    *,
    run_id: str,
    now: datetime,
) -> tuple[int, int]:
    """The notices of the days' executed declines and the outbox pages, page by page; how
    many executions and notices the days have.

    No page outlives this call (a loop's variable kept the last one alive through the output
    seal, where the step peaks): the outbox's pages are on disk when it returns, renamed into
    place at `commit`.
    """
    texts = policy_reason_texts(domain)
    total, notices = 0, 0
    for page in executed_pages(con, domain.name, days, page_rows):
        total += page.height
        notices += _issue_notices(con, domain, page, texts, run_id, now)
        written.write(page.filter(~pl.col("case_id").is_in(list(gold))))
    return total, notices


def _execute_slice(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    routed: pl.DataFrame,
    verdicts: pl.DataFrame | pl.LazyFrame,
    days: list[date],
    tally: _Tally,
    sealable: StepKeys,
    *,
    halted: bool,
    gold: set[str],
    run_id: str,
    now: datetime,
) -> pl.DataFrame:
    """One slice of the days' own cases: final actions, checks, the new `executions` rows.

    Adds to `tally`, to the keys the output seal may log (`sealable`) and to the reasons table
    the notices read; returns the slice's actions.
    """
    verdicts = slice_verdicts(verdicts, routed[domain.case_id])
    earlier = _earlier_executions(con, domain.name, days, routed, domain.case_id)
    fresh = final_actions(routed, verdicts, domain.case_id, halted=halted)
    actions = refuse_gold(keep_executed(fresh, earlier), gold)
    to_execute = new_executions(actions, earlier, domain.name, run_id, now)
    reviewed = to_execute.filter(pl.col("decided_by") == "reviewer")["case_id"].to_list()
    check = check_sealed_inputs(con, domain.name, reviewed, reviewed)
    if check.domain_problems:
        raise ExecutionRefused(
            f"{domain.name}: execution refused, the policy activation or kill-switch records "
            "differ from the sealed audit log:\n  " + "\n  ".join(check.domain_problems[:10])
        )
    if check.refused:
        to_execute = to_execute.filter(~pl.col("case_id").is_in(list(check.refused)))
        actions = actions.with_columns(
            pl.when(pl.col("case_id").is_in(list(check.refused)))
            .then(pl.lit("refused_unsealed"))
            .otherwise(pl.col("status"))
            .alias("status")
        )
    tally.executed_now += insert_once(con, "executions", to_execute)
    tally.refused.update(check.refused)
    sealable.add(pl.concat([to_execute["case_id"], agreeing(fresh, earlier)["case_id"]]))
    tally.outcomes.append(actions.group_by("status", "action").len())
    reasons = reason_columns(routed, verdicts, domain.case_id, declined_cases(to_execute, earlier))
    if reasons.height:
        with registered(con, "slice_reasons", reasons.to_arrow()):
            con.execute(f"INSERT INTO {_REASONS} BY NAME SELECT * FROM slice_reasons")
    return actions


def _earlier_executions(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    days: list[date],
    routed: pl.DataFrame,
    case_id: str,
) -> pl.DataFrame:
    """The slice's cases already in `executions` (an earlier run of the days executed them)."""
    ids = routed.select(pl.col(case_id).cast(pl.String).alias("case_id"))
    with registered(con, "slice_cases", ids.to_arrow()):
        return query_frame(
            con,
            "SELECT case_id, action, decided_by, reviewer_id FROM executions "
            f"WHERE {_DAYS} AND case_id IN (SELECT case_id FROM slice_cases)",
            [domain, days],
        )


def executed_pages(
    con: duckdb.DuckDBPyConnection, domain: str, days: list[date], page_rows: int
) -> Iterator[pl.DataFrame]:
    """Every execution of the days, in case order, `page_rows` at a time (at least one page).

    Each page is the stretch of case ids between two of `page_bounds`, so it reads and sorts
    its own rows only, not the whole day once per page (a top-N after the previous page's
    last id did: pages x day). The pages are the ones `LIMIT`-ed keyset pages gave, the last
    one short (empty when the day fills its pages exactly), since a case is executed once.
    """
    bounds: list[str | None] = [None, *page_bounds(con, domain, days, page_rows), None]
    for after, through in itertools.pairwise(bounds):
        yield query_frame(
            con,
            f"SELECT * FROM executions WHERE {_DAYS} AND (?::VARCHAR IS NULL OR case_id > ?) "
            "AND (?::VARCHAR IS NULL OR case_id <= ?) ORDER BY case_id",
            [domain, days, after, after, through, through],
        )


def page_bounds(
    con: duckdb.DuckDBPyConnection, domain: str, days: list[date], page_rows: int
) -> list[str]:
    """The last case id of each full page of the days' executions in case order: ids number
    `page_rows`, 2 x `page_rows`, ... (none when the days fit one short page).

    One sort of the days' case ids alone, skipped when a count says there is one page.
    """
    count = con.execute(f"SELECT count(*) FROM executions WHERE {_DAYS}", [domain, days])
    if int(count.fetchall()[0][0]) < page_rows:
        return []
    rows = con.execute(
        "SELECT case_id FROM (SELECT case_id, row_number() OVER (ORDER BY case_id) AS n "
        f"FROM executions WHERE {_DAYS}) WHERE n % ? = 0 ORDER BY case_id",
        [domain, days, page_rows],
    ).fetchall()
    return [str(case_id) for (case_id,) in rows]


def _issue_notices(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    executed: pl.DataFrame,
    texts: dict[str, str],
    run_id: str,
    now: datetime,
) -> int:
    """Insert the adverse-action notices of a page of executions (new ones only); how many the
    page's executed declines have, old and new."""
    with registered(con, "page_cases", executed.select("case_id").to_arrow()):
        reasons = query_frame(
            con,
            f"SELECT * FROM {_REASONS} WHERE case_id IN (SELECT case_id FROM page_cases)",
        )
    notices = adverse_actions(
        executed.join(reasons, on="case_id", how="left"), domain, texts
    ).with_columns(pl.lit(run_id).alias("run_id"), pl.lit(now).alias("issued_at"))
    insert_once(con, "adverse_actions", notices)
    return notices.height


def refuse_gold(actions: pl.DataFrame, gold: set[str]) -> pl.DataFrame:
    """Mark gold cases `refused_gold` with no action, so nothing executes them."""
    if not gold:
        return actions
    is_gold = pl.col("case_id").is_in(list(gold))
    return actions.with_columns(
        pl.when(is_gold).then(pl.lit("refused_gold")).otherwise("status").alias("status"),
        pl.when(is_gold).then(pl.lit(None, pl.String)).otherwise("action").alias("action"),
    )


def agreeing(fresh: pl.DataFrame, earlier: pl.DataFrame) -> pl.DataFrame:
    """Earlier executions whose action, decider and reviewer this run computes too.

    What a re-run may seal of a killed run's unsealed rows: a forged execution that acts
    otherwise than the pipeline would stays unsealed (and refused by every seal).
    """
    keys = ["case_id", "action", "decided_by", "rev"]
    computed = fresh.filter(pl.col("status") == "executed").select(
        "case_id", "action", "decided_by",
        pl.when(pl.col("decided_by") == "reviewer").then(pl.col("reviewer_id")).alias("rev"),
    )  # fmt: skip
    stored = earlier.select("case_id", "action", "decided_by", pl.col("reviewer_id").alias("rev"))
    as_text = [pl.col(k).cast(pl.String) for k in keys]  # an empty frame's columns may be Null
    return stored.select(as_text).join(computed.select(as_text), on=keys, nulls_equal=True)


def insert_once(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """The frame's rows whose primary key is new, inserted; how many (`insert_new_keys`).

    A slice's executions and notices exclude the keys already stored for the days, so the
    plain insert is the usual case; a key stored anyway (the same case id under another day,
    a case twice in the routed rows) is skipped, as it always was. Auto-commit only.
    """
    if frame.height == 0:
        return 0
    with registered(con, "incoming_once", frame.to_arrow()):
        return insert_new_keys(con, table, "SELECT * FROM incoming_once")


def declined_cases(to_execute: pl.DataFrame, earlier: pl.DataFrame) -> pl.Series:
    """The slice's cases whose stored execution may be a decline: the only ones a notice reads
    reasons for (`adverse_actions`), about a tenth of the day's cases.

    The days' executions of a slice's cases are the ones stored before it (`earlier`) and the
    ones it inserts (a subset of `to_execute`), each with the action it has in the table.
    """
    declined = pl.col("action") == "decline"
    return pl.concat(
        [frame.filter(declined)["case_id"].cast(pl.String) for frame in (to_execute, earlier)]
    )


def reason_columns(
    routed: pl.DataFrame, verdicts: pl.DataFrame, case_id: str, cases: pl.Series | None = None
) -> pl.DataFrame:
    """Per case (of `cases` only, when given): the policy's reason code for its route and the
    reviewer's reason code."""
    reasons = routed.select(
        pl.col(case_id).cast(pl.String).alias("case_id"),
        *_present(routed, "route_reason_code"),
    )
    if cases is not None:
        reasons = reasons.filter(pl.col("case_id").is_in(cases.implode()))
    reviewer = verdicts.select("case_id", *_present(verdicts, "verdict_reason_code"))
    return reasons.join(reviewer.unique("case_id"), on="case_id", how="left")


def _present(frame: pl.DataFrame, *names: str) -> list[str]:
    """The subset of `names` that `frame` has (verdict frames differ between issues)."""
    return [n for n in names if n in frame.columns]


def policy_reason_texts(domain: DomainConfig) -> dict[str, str]:
    """Reason code -> rule text of the domain's policy (auto-decline reasons in plain words)."""
    from policies.engine import load_policy

    policy = load_policy(domain.policy_path)
    return {rule.reason_code: " ".join(rule.text.split()) for rule in reversed(policy.rules)}
