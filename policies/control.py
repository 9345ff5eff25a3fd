"""Which policy is in force, and whether automation is halted: both recorded in the audit DB.

The domain declaration names the *bootstrap* policy file. Once anyone activates a version, the
latest row of `policy_activations` decides: its stored text (not the file, which may have been
edited since) is what routes. Rolling back re-activates the version that was in force before
the current one, again from its stored text. Every activation, rollback, halt and resume is a
new row, never an update, so the history is the audit trail.

A candidate can also run in *shadow* (`policy_shadows`, same append-only style): it routes
every new partition next to the policy in force, its routes are stored in `shadow_decisions`
and never acted on.

Every change is a signed act (docs/people.md): the actor signs a payload naming the act, the
domain and the policy digest with their registered SSH key, and the row keeps the signature,
the signer's fingerprint and the payload. An activation is recorded *pending* and routes only
once a different person (another key and another registry id) approves it, also signed; a
resume needs two people's signatures; rollback and halt need one. Other guards: a policy that
validates and analyses without errors against the domain's case columns, and an effective date
that is not in the future.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import query_frame, scalar, transaction
from hitl_gate.core.domain import PROJECT_ROOT, DomainConfig
from hitl_gate.identity.acts import IdentityError, require_distinct
from hitl_gate.identity.registry import RegistryError, Signer
from hitl_gate.identity.signatures import AUTOMATION, POLICY
from hitl_gate.identity.signed_acts import (
    SignedPayload,
    VerifiedAct,
    act_payload,
    check_signed_act,
    refuse_replay,
)
from hitl_gate.identity.store import load_registry
from policies.model import Policy, PolicyError, load_policy, load_policy_text

BOOTSTRAP = "bootstrap"
ACTIVATE, APPROVE, ROLLBACK = "activate", "approve", "rollback"
# The signed payloads' `act` field (one per kind of act, so one can never pass for another).
ACT_ACTIVATE, ACT_APPROVE, ACT_ROLLBACK = "policy_activate", "policy_approve", "policy_rollback"
ACT_HALT, ACT_RESUME = "automation_halt", "automation_resume"
# Roles per act, held in the policy's domain (or `*`); see docs/people.md.
POLICY_OWNER, POLICY_APPROVER, OPERATOR = "policy_owner", "policy_approver", "operator"
ACTIVATE_ROLES = (POLICY_OWNER,)
APPROVE_ROLES = (POLICY_OWNER, POLICY_APPROVER)
ROLLBACK_ROLES = (POLICY_OWNER, OPERATOR)
HALT_ROLES = (POLICY_OWNER, OPERATOR)


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
    """The latest approved activation's (or rollback's) stored policy, or the declaration's
    file when there is none. An activation waiting for its approval routes nothing."""
    row = None
    if con is not None and _has_table(con, "policy_activations"):
        row = _first(
            con,
            "SELECT seq, policy_text, policy_source FROM policy_activations WHERE domain = ? "
            f"AND action IN ('{APPROVE}', '{ROLLBACK}') ORDER BY seq DESC LIMIT 1",
            [domain.name],
        )
    if row is None:
        return PolicyInForce(load_policy(domain.policy_path), BOOTSTRAP)
    seq, text, source = row
    return PolicyInForce(load_policy_text(text, source), f"activation #{seq}")


def activation_history(con: duckdb.DuckDBPyConnection, domain: str) -> pl.DataFrame:
    """Every activation, approval and rollback of `domain`, oldest first (without the text)."""
    if not _has_table(con, "policy_activations"):
        return pl.DataFrame()
    return query_frame(
        con,
        "SELECT seq, action, approves_seq, policy_version, policy_digest, effective_date, "
        "activated_by, approved_by, signer_fingerprint, reason, recorded_at "
        "FROM policy_activations WHERE domain = ? ORDER BY seq",
        [domain],
    )


def activation_payload(
    domain: str, policy: Policy, *, reason: str | None = None, at: datetime | None = None
) -> bytes:
    """What the activating policy owner signs: the domain, the version and its digest."""
    return act_payload(
        ACT_ACTIVATE,
        at,
        domain=domain,
        version=policy.version,
        digest=policy.digest,
        reason=reason,
    )


def record_activation(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    policy: Policy,
    act: SignedPayload,
    *,
    today: date | None = None,
    now: datetime | None = None,
) -> int:
    """Append a signed activation after the guards; returns its sequence number.

    It routes nothing until a different person approves it (`approve_activation`)."""
    what = f"activation of {policy.version} in {domain.name}"
    verified = _verified_policy_act(
        con, domain, act, what, kind=ACT_ACTIVATE, policy=policy, roles=ACTIVATE_ROLES, now=now
    )
    _check_effective(policy, today)
    return _insert_activation(
        con, domain.name, policy, verified, action=ACTIVATE, activated_by=verified.signer.person_id
    )


@dataclass(frozen=True)
class PendingActivation:
    """An activation recorded but not yet approved: what the approver signs for."""

    seq: int
    policy: Policy
    activated_by: str
    signer_fingerprint: str
    payload_sha256: str


def pending_activation(
    con: duckdb.DuckDBPyConnection, domain: str, seq: int | None = None
) -> PendingActivation:
    """The latest activation of `domain` (or #`seq`), if nothing was approved or rolled back
    since; otherwise why there is nothing to approve."""
    rows = con.execute(
        "SELECT seq, action, policy_text, policy_source, activated_by, signer_fingerprint, "
        "payload_sha256 FROM policy_activations WHERE domain = ? ORDER BY seq",
        [domain],
    ).fetchall()
    activations = [r for r in rows if r[1] == ACTIVATE]
    if not activations:
        raise PolicyControlError(f"{domain}: no activation waits for approval")
    latest = activations[-1]
    if seq is not None and seq != latest[0]:
        raise PolicyControlError(
            f"{domain}: activation #{seq} is not the latest activation (#{latest[0]})"
        )
    if rows[-1][0] != latest[0]:
        later = rows[-1]
        raise PolicyControlError(
            f"{domain}: activation #{latest[0]} is not pending (#{later[0]} {later[1]} came after)"
        )
    if latest[5] is None or latest[6] is None:
        raise PolicyControlError(f"{domain}: activation #{latest[0]} is unsigned; activate again")
    return PendingActivation(
        seq=int(latest[0]),
        policy=load_policy_text(latest[2], latest[3]),
        activated_by=str(latest[4]),
        signer_fingerprint=str(latest[5]),
        payload_sha256=str(latest[6]),
    )


def approval_payload(
    domain: str, pending: PendingActivation, *, at: datetime | None = None
) -> bytes:
    """What the approver signs: the same policy digest and the activation act it approves."""
    return act_payload(
        ACT_APPROVE,
        at,
        domain=domain,
        version=pending.policy.version,
        digest=pending.policy.digest,
        activation=pending.payload_sha256,
    )


def approve_activation(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    act: SignedPayload,
    *,
    seq: int | None = None,
    today: date | None = None,
    now: datetime | None = None,
) -> int:
    """Approve the pending activation with a second person's signature: from then it routes.

    The approver must be a different person with a different key than the activator (one key
    under two names, or one person with two keys, is one person)."""
    pending = pending_activation(con, domain.name, seq)
    what = f"approval of {pending.policy.version} in {domain.name}"
    verified = _verified_policy_act(
        con,
        domain,
        act,
        what,
        kind=ACT_APPROVE,
        policy=pending.policy,
        roles=APPROVE_ROLES,
        now=now,
        activation=pending.payload_sha256,
    )
    activator = Signer(person_id=pending.activated_by, fingerprint=pending.signer_fingerprint)
    _distinct([activator, verified.signer], what)
    _check_effective(pending.policy, today)
    return _insert_activation(
        con,
        domain.name,
        pending.policy,
        verified,
        action=APPROVE,
        activated_by=pending.activated_by,
        approved_by=verified.signer.person_id,
        approves_seq=pending.seq,
    )


def rollback_target(con: duckdb.DuckDBPyConnection, domain: DomainConfig) -> Policy:
    """The policy in force before the current one (what a rollback returns to).

    The history is replayed as a stack (bootstrap at the bottom, each approved activation
    pushes, each rollback pops), so two rollbacks after two activations lead back to the
    bootstrap rather than toggling between the last two versions."""
    rows = con.execute(
        "SELECT action, policy_text, policy_source FROM policy_activations "
        "WHERE domain = ? ORDER BY seq",
        [domain.name],
    ).fetchall()
    bootstrap = load_policy(domain.policy_path)
    stack: list[tuple[str, str]] = [(bootstrap.text, bootstrap.source)]
    for action, text, source in rows:
        if action == ROLLBACK:
            stack.pop()
        elif action == APPROVE:
            stack.append((text, source))
    if len(stack) < 2:
        raise PolicyControlError(
            f"nothing to roll back: {domain.name} runs the policy it started with"
        )
    return load_policy_text(*stack[-2])


def rollback_payload(
    domain: str, target: Policy, *, reason: str | None = None, at: datetime | None = None
) -> bytes:
    """What the person rolling back signs: the domain and the policy it returns to."""
    return act_payload(
        ACT_ROLLBACK, at, domain=domain, version=target.version, digest=target.digest, reason=reason
    )


def rollback(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    act: SignedPayload,
    *,
    now: datetime | None = None,
) -> Policy:
    """Return to the policy in force before the current one, from its stored text: one signed
    act (going back to a policy two people approved needs no second approval)."""
    policy = rollback_target(con, domain)
    verified = _verified_policy_act(
        con,
        domain,
        act,
        f"rollback of {domain.name} to {policy.version}",
        kind=ACT_ROLLBACK,
        policy=policy,
        roles=ROLLBACK_ROLES,
        now=now,
    )
    _insert_activation(
        con, domain.name, policy, verified, action=ROLLBACK, activated_by=verified.signer.person_id
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


def halt_payload(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    *,
    halted: bool,
    reason: str,
    at: datetime | None = None,
) -> bytes:
    """What the people halting (one) or resuming (two, the same bytes) sign: the domain, the
    reason and the switch event it follows (so it cannot be replayed later)."""
    return act_payload(
        ACT_HALT if halted else ACT_RESUME,
        at,
        domain=domain,
        reason=reason,
        after=_next_seq(con, "automation_halts", domain) - 1,
    )


def set_halt(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    *,
    halted: bool,
    acts: Sequence[SignedPayload],
    now: datetime | None = None,
) -> HaltState:
    """Halt (one signature) or resume (two people's signatures of the same payload).

    Refuses a no-op so the log has no meaningless rows."""
    if halt_state(con, domain).halted == halted:
        state = "halted" if halted else "running"
        raise PolicyControlError(f"automation of {domain} is already {state}")
    needed = 1 if halted else 2
    what = f"{'halt' if halted else 'resume'} of automation in {domain}"
    if len(acts) != needed:
        raise PolicyControlError(
            f"{what} needs {needed} signature{'s' if needed > 1 else ''}, got {len(acts)}"
        )
    if len({a.payload for a in acts}) > 1:
        raise PolicyControlError(f"{what}: the two signatures are over different payloads")
    after = _next_seq(con, "automation_halts", domain) - 1
    expected = {"act": ACT_HALT if halted else ACT_RESUME, "domain": domain, "after": after}
    verified = [
        _verified(
            con,
            "automation_halts",
            act,
            AUTOMATION,
            what,
            domain=domain,
            roles=HALT_ROLES,
            expected=expected,
            now=now,
        )
        for act in acts
    ]
    _distinct([v.signer for v in verified], what)
    reason = str(verified[0].fields.get("reason") or "").strip()
    if not reason:
        raise PolicyControlError(f"{what}: a reason is required")
    first, second = verified[0], verified[1] if len(verified) > 1 else None
    recorded = datetime.now(UTC)
    con.execute(
        "INSERT INTO automation_halts (domain, seq, halted, reason, actor, recorded_at, "
        "signer_fingerprint, act_payload, signature, payload_sha256, second_actor, "
        "second_fingerprint, second_signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            domain,
            after + 1,
            halted,
            reason,
            first.signer.person_id,
            recorded,
            first.signer.fingerprint,
            first.act.text,
            first.act.signature,
            first.act.payload_sha256,
            None if second is None else second.signer.person_id,
            None if second is None else second.signer.fingerprint,
            None if second is None else second.act.signature,
        ],
    )
    actors = " and ".join(v.signer.person_id for v in verified)
    return HaltState(halted, reason, actors, recorded)


def _verified(
    con: duckdb.DuckDBPyConnection,
    table: str,
    act: SignedPayload,
    namespace: str,
    what: str,
    *,
    domain: str,
    roles: Sequence[str],
    expected: dict[str, object],
    now: datetime | None,
) -> VerifiedAct:
    """The act checked against the registry as stored and never used before, or refused."""
    try:
        verified = check_signed_act(
            load_registry(con),
            act,
            namespace,
            expected=expected,
            roles=roles,
            domain=domain,
            what=what,
            now=now,
        )
        refuse_replay(con, table, act, what)
    except (IdentityError, RegistryError) as error:
        raise PolicyControlError(str(error)) from error
    return verified


def _verified_policy_act(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    act: SignedPayload,
    what: str,
    *,
    kind: str,
    policy: Policy,
    roles: Sequence[str],
    now: datetime | None,
    **more: object,
) -> VerifiedAct:
    """An activation, approval or rollback act: signed over `kind`, the domain and `policy`'s
    version and digest (and `more`, e.g. the activation an approval approves), by one of
    `roles`, never used before (`_verified`)."""
    expected = {
        "act": kind,
        "domain": domain.name,
        "version": policy.version,
        "digest": policy.digest,
        **more,
    }
    return _verified(
        con,
        "policy_activations",
        act,
        POLICY,
        what,
        domain=domain.name,
        roles=roles,
        expected=expected,
        now=now,
    )


def _distinct(signers: Sequence[Signer], what: str) -> None:
    try:
        require_distinct(signers, what)
    except IdentityError as error:
        raise PolicyControlError(str(error)) from error


def _check_effective(policy: Policy, today: date | None) -> None:
    if policy.effective_date > (today or datetime.now(UTC).date()):
        raise PolicyControlError(
            f"{policy.source}: effective date {policy.effective_date} is in the future; "
            "a policy cannot go live before it"
        )


def _insert_activation(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    policy: Policy,
    verified: VerifiedAct,
    *,
    action: str,
    activated_by: str,
    approved_by: str | None = None,
    approves_seq: int | None = None,
) -> int:
    seq = _next_seq(con, "policy_activations", domain)
    reason = verified.fields.get("reason")
    con.execute(
        "INSERT INTO policy_activations (domain, seq, action, policy_version, policy_digest, "
        "effective_date, policy_source, policy_text, activated_by, approved_by, reason, "
        "recorded_at, approves_seq, signer_fingerprint, act_payload, signature, payload_sha256) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            domain,
            seq,
            action,
            policy.version,
            policy.digest,
            policy.effective_date,
            policy.source,
            policy.text,
            activated_by,
            approved_by,
            None if reason is None else str(reason),
            datetime.now(UTC),
            approves_seq,
            verified.signer.fingerprint,
            verified.act.text,
            verified.act.signature,
            verified.act.payload_sha256,
        ],
    )
    return seq


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
