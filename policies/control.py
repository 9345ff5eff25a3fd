"""Which policy is in force, and whether automation is halted: both recorded in the audit DB.

The domain declaration names the *bootstrap* policy file. Once anyone activates a version, the
latest row of `policy_activations` decides: its stored text (not the file, which may have been
edited since) is what routes. Rolling back re-activates the version that was in force before
the current one, again from its stored text. Every activation, rollback, halt and resume is a
new row, never an update, so the history is the audit trail.

A candidate can also run in *shadow* (`policy_shadows`, same append-only style): it routes
every new partition next to the policy in force, its routes are stored in `shadow_decisions`
and never acted on.

Guards: an activation needs two different people (`activated_by` and `approved_by`), a policy
that validates and analyses without errors against the domain's case columns, and an
effective date that is not in the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import query_frame, scalar, transaction
from hitl_gate.core.domain import PROJECT_ROOT, DomainConfig
from policies.model import Policy, PolicyError, load_policy, load_policy_text

BOOTSTRAP = "bootstrap"


class PolicyControlError(ValueError):
    """An activation, rollback, halt or resume that was refused; the message says why."""


@dataclass(frozen=True)
class PolicyInForce:
    """The policy routing new cases now, and where that choice comes from."""

    policy: Policy
    origin: str  # "bootstrap" (domain declaration) or "activation #<seq>"


@dataclass(frozen=True)
class HaltState:
    """The kill switch: on when `halted`; `reason`, `actor` and time of the last change."""

    halted: bool
    reason: str | None = None
    actor: str | None = None
    since: datetime | None = None


def policy_files(domain: DomainConfig) -> list[Path]:
    """Every policy file of the domain (the folder of its bootstrap policy)."""
    folder = domain.policy_path.parent
    return sorted(p for p in folder.glob("*.yaml") if not p.name.endswith(".cases.yaml"))


def find_policy_file(domain: DomainConfig, version_or_path: str) -> Path:
    """A policy file by its path, or by the `version` it declares among the domain's files."""
    candidate = Path(version_or_path)
    for path in (candidate, PROJECT_ROOT / candidate):
        if path.is_file():
            return path.resolve()
    for path in policy_files(domain):
        try:
            if load_policy(path).version == version_or_path:
                return path
        except PolicyError:
            continue
    known = ", ".join(p.name for p in policy_files(domain)) or "none"
    raise PolicyControlError(
        f"no policy file or version '{version_or_path}' for domain {domain.name} (files: {known})"
    )


def policy_in_force(con: duckdb.DuckDBPyConnection | None, domain: DomainConfig) -> PolicyInForce:
    """The latest activation's stored policy, or the declaration's file when there is none."""
    row = None
    if con is not None and _has_table(con, "policy_activations"):
        row = _first(
            con,
            "SELECT seq, policy_text, policy_source FROM policy_activations WHERE domain = ? "
            "ORDER BY seq DESC LIMIT 1",
            [domain.name],
        )
    if row is None:
        return PolicyInForce(load_policy(domain.policy_path), BOOTSTRAP)
    seq, text, source = row
    return PolicyInForce(load_policy_text(text, source), f"activation #{seq}")


def activation_history(con: duckdb.DuckDBPyConnection, domain: str) -> pl.DataFrame:
    """Every activation and rollback of `domain`, oldest first (without the policy text)."""
    if not _has_table(con, "policy_activations"):
        return pl.DataFrame()
    return query_frame(
        con,
        "SELECT seq, action, policy_version, policy_digest, effective_date, activated_by, "
        "approved_by, reason, recorded_at FROM policy_activations WHERE domain = ? ORDER BY seq",
        [domain],
    )


def record_activation(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    policy: Policy,
    *,
    by: str,
    approved_by: str | None,
    action: str = "activate",
    reason: str | None = None,
    today: date | None = None,
) -> int:
    """Append an activation after the guards; returns its sequence number."""
    by = by.strip()
    if not by:
        raise PolicyControlError("--by is required: who activates the policy")
    if action == "activate":
        approver = (approved_by or "").strip()
        if not approver or approver.lower() == by.lower():
            raise PolicyControlError(
                "activation needs a second person: --approved-by must name someone other "
                f"than --by ({by})"
            )
        if policy.effective_date > (today or datetime.now(UTC).date()):
            raise PolicyControlError(
                f"{policy.source}: effective date {policy.effective_date} is in the future; "
                "a policy cannot go live before it"
            )
    seq = _next_seq(con, "policy_activations", domain.name)
    con.execute(
        "INSERT INTO policy_activations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            domain.name,
            seq,
            action,
            policy.version,
            policy.digest,
            policy.effective_date,
            policy.source,
            policy.text,
            by,
            approved_by,
            reason,
            datetime.now(UTC),
        ],
    )
    return seq


def rollback(
    con: duckdb.DuckDBPyConnection, domain: DomainConfig, *, by: str, reason: str | None
) -> Policy:
    """Return to the policy in force before the current one, from its stored text.

    The history is replayed as a stack (bootstrap at the bottom, each activation pushes, each
    rollback pops), so two rollbacks after two activations lead back to the bootstrap rather
    than toggling between the last two versions.
    """
    rows = con.execute(
        "SELECT action, policy_text, policy_source FROM policy_activations "
        "WHERE domain = ? ORDER BY seq",
        [domain.name],
    ).fetchall()
    bootstrap = load_policy(domain.policy_path)
    stack: list[tuple[str, str]] = [(bootstrap.text, bootstrap.source)]
    for action, text, source in rows:
        if action == "rollback":
            stack.pop()
        else:
            stack.append((text, source))
    if len(stack) < 2:
        raise PolicyControlError(
            f"nothing to roll back: {domain.name} runs the policy it started with"
        )
    policy = load_policy_text(*stack[-2])
    record_activation(
        con, domain, policy, by=by, approved_by=None, action="rollback", reason=reason
    )
    return policy


def halt_state(con: duckdb.DuckDBPyConnection | None, domain: str) -> HaltState:
    """The kill switch of `domain`: off unless the latest event is a halt."""
    if con is None or not _has_table(con, "automation_halts"):
        return HaltState(False)
    row = _first(
        con,
        "SELECT halted, reason, actor, recorded_at FROM automation_halts WHERE domain = ? "
        "ORDER BY seq DESC LIMIT 1",
        [domain],
    )
    return HaltState(False) if row is None else HaltState(*row)


def set_halt(
    con: duckdb.DuckDBPyConnection, domain: str, *, halted: bool, reason: str, by: str
) -> HaltState:
    """Halt or resume automation; refuses a no-op so the log has no meaningless rows."""
    if not by.strip() or not reason.strip():
        raise PolicyControlError("--by and --reason are required to halt or resume automation")
    if halt_state(con, domain).halted == halted:
        state = "halted" if halted else "running"
        raise PolicyControlError(f"automation of {domain} is already {state}")
    now = datetime.now(UTC)
    con.execute(
        "INSERT INTO automation_halts VALUES (?, ?, ?, ?, ?, ?)",
        [domain, _next_seq(con, "automation_halts", domain), halted, reason, by, now],
    )
    return HaltState(halted, reason, by, now)


def shadow_policy(con: duckdb.DuckDBPyConnection | None, domain: str) -> Policy | None:
    """The candidate running in shadow for `domain` (from its stored text), or None."""
    if con is None or not _has_table(con, "policy_shadows"):
        return None
    row = _first(
        con,
        "SELECT action, policy_text, policy_source FROM policy_shadows WHERE domain = ? "
        "ORDER BY seq DESC LIMIT 1",
        [domain],
    )
    if row is None or row[0] != "set":
        return None
    return load_policy_text(row[1], row[2])


def set_shadow(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    policy: Policy | None,
    *,
    by: str,
    reason: str | None = None,
) -> int:
    """Run `policy` in shadow from the next run on (None: stop the shadow); returns the seq.

    One person is enough: a shadow policy decides nothing. Setting the shadow that already
    runs, or clearing when none runs, is refused so the log has no meaningless rows.
    """
    if not by.strip():
        raise PolicyControlError("--by is required: who sets or clears the shadow policy")
    current = shadow_policy(con, domain)
    if policy is None and current is None:
        raise PolicyControlError(f"no shadow policy runs for {domain}")
    if policy is not None and current is not None and current.digest == policy.digest:
        raise PolicyControlError(f"{policy.version} already runs in shadow for {domain}")
    seq = _next_seq(con, "policy_shadows", domain)
    con.execute(
        "INSERT INTO policy_shadows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            domain,
            seq,
            "clear" if policy is None else "set",
            None if policy is None else policy.version,
            None if policy is None else policy.digest,
            None if policy is None else policy.source,
            None if policy is None else policy.text,
            by,
            reason,
            datetime.now(UTC),
        ],
    )
    return seq


BACKLOG_SQL = """
SELECT d.case_id, d.partition_date FROM decisions d
WHERE d.domain = ? AND d.review_deferred AND d.partition_date < ?
  AND NOT EXISTS (
      SELECT 1 FROM review_batch_cases m JOIN review_batches b USING (batch_id)
      WHERE m.domain = d.domain AND m.case_id = d.case_id AND b.partition_date < ?)
  AND NOT EXISTS (
      SELECT 1 FROM executions e WHERE e.domain = d.domain AND e.case_id = d.case_id)
ORDER BY d.partition_date, d.case_id
"""


def review_backlog(con: duckdb.DuckDBPyConnection, domain: str, before: date) -> pl.DataFrame:
    """Cases deferred on days before `before` that no batch of an earlier day took yet.

    A case carried into a day's batch leaves the backlog from the next day on; re-running
    that day finds it again (its batch is of that day), so re-runs schedule the same cases.
    """
    return query_frame(con, BACKLOG_SQL, [domain, before, before])


def record_shadow_decisions(
    con: duckdb.DuckDBPyConnection,
    rows: pl.DataFrame,
    domain: str,
    days: list[date],
    policy_digest: str,
) -> None:
    """Replace the shadow policy's rows of `days` (other shadow policies' rows stay)."""
    with transaction(con):
        con.execute(
            "DELETE FROM shadow_decisions WHERE domain = ? AND policy_digest = ? "
            "AND partition_date IN (SELECT unnest(?::DATE[]))",
            [domain, policy_digest, days],
        )
        if rows.height:
            con.register("incoming_shadow", rows.to_arrow())
            con.execute("INSERT INTO shadow_decisions BY NAME SELECT * FROM incoming_shadow")
            con.unregister("incoming_shadow")


def _first(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> tuple | None:
    """The first row or None; fetches fully, as DuckDB 2 requires before new work."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else None


def _next_seq(con: duckdb.DuckDBPyConnection, table: str, domain: str) -> int:
    value = scalar(con, f"SELECT coalesce(max(seq), 0) + 1 FROM {table} WHERE domain = ?", [domain])
    return int(value)


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Read-only connections to an older file may not have this module's tables yet."""
    found = scalar(
        con, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    )
    return bool(found)
