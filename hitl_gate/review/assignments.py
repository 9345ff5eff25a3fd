"""Who must answer a review batch: chosen at export, recorded in `review_assignments`.

Exports write seq 1 (the pipeline's choice, `assigned_by = 'pipeline'`); a supervisor's signed
reassignment appends the next seq. Intake asks `current_assignee` and accepts only that person's
signature on the batch.

The choice (`Assigner`) is the least-loaded available person among the registry's active
holders of the queue's role, counted in cases per person and per case day (the same day the
queue's `daily_capacity` counts), then in cases assigned on earlier case days, then by person
id, so a re-run chooses the same people.
A person's own `daily_capacity` wins over the queue's; a person inside an unavailability window
is skipped. When nobody can take a batch its cases are not exported: they stay queued with a
counted reason (`Unassigned`), never given to an invented id.

A four-eyes batch needs two *different* people (slot 1 and slot 2); with only one person
available neither slot is exported, so one person can never hold both opinions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import duckdb

from hitl_gate.core.digests import canonical_json
from hitl_gate.identity.acts import IdentityError, verify_act
from hitl_gate.identity.registry import Person, Registry, RegistryError, parse_time
from hitl_gate.identity.signatures import PORTAL, REVIEW_ADMIN
from hitl_gate.identity.store import load_registry

PIPELINE = "pipeline"
SINGLE, FIRST_OPINION, SECOND_OPINION = 0, 1, 2
# Key types age can encrypt to (pyrage.ssh.Recipient); others cannot receive encrypted batches.
AGE_KEY_TYPES = frozenset({"ssh-ed25519", "ssh-rsa"})
SUPERVISOR_ADMIN_ROLE = "admin"  # `<domain>:admin` or `*:admin`
REASSIGN_KIND = "reassign_batch"
PORTAL_REASSIGN_ACT = "portal_reassign"
PORTAL_SIGNER = "portal"  # `*:portal`: the portal's own key (app/portal/verdicts.PORTAL_ROLE)
MAX_CLOCK_SKEW = timedelta(minutes=10)


class AssignmentError(ValueError):
    """A reassignment that is refused, with the reason in words."""


@dataclass(frozen=True)
class Assignment:
    """The current holder of a batch and which opinion it carries (0 single, 1/2 four-eyes)."""

    batch_id: str
    assignee_id: str
    queue: str
    opinion_slot: int
    seq: int


def current_assignee(con: duckdb.DuckDBPyConnection, batch_id: str) -> Assignment | None:
    """The batch's current assignment (None: the batch was never assigned)."""
    row = next(
        iter(
            con.execute(
                "SELECT batch_id, assignee_id, queue, opinion_slot, seq FROM review_assignments "
                "WHERE batch_id = ? ORDER BY seq DESC LIMIT 1",
                [batch_id],
            ).fetchall()
        ),
        None,
    )
    if row is None:
        return None
    return Assignment(str(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4]))


def age_keys(person: Person, at: datetime) -> list[str]:
    """The person's usable keys age can encrypt to, as OpenSSH lines."""
    return [k.key.openssh for k in person.usable_keys(at) if k.key.key_type in AGE_KEY_TYPES]


@dataclass(frozen=True)
class Unassigned:
    """Cases of a queue left queued because nobody could take them, and why."""

    queue: str
    partition_date: date
    cases: int
    reason: str


@dataclass
class Assigner:
    """Chooses the reviewers of one domain's batches at one moment, counting load as it goes.

    `load` holds the cases already assigned per (person, case day) that this export does not
    replace; `needs_age_key` (the domain encrypts batches) skips people without a key age can
    encrypt to.
    """

    registry: Registry
    domain: str
    at: datetime
    load: dict[tuple[str, date], int] = field(default_factory=dict)
    needs_age_key: bool = False

    def _remaining(self, person: Person, day: date, fallback: int | None) -> int | None:
        capacity = person.daily_capacity if person.daily_capacity is not None else fallback
        if capacity is None:
            return None
        return capacity - self.load.get((person.person_id, day), 0)

    def _backlog(self, person_id: str, day: date) -> int:
        """Cases assigned to the person on earlier case days: the tie-break after the day's
        load, so one batch a day does not always go to the same person. Earlier days only,
        so re-exporting a day sees what its first export saw."""
        return sum(n for (who, when), n in self.load.items() if who == person_id and when < day)

    def _candidates(
        self, role: str, queue: str, day: date, fallback: int | None
    ) -> tuple[list[tuple[Person, int | None]], str]:
        holders = [
            p
            for p in self.registry.holders(self.domain, role, self.at)
            if p.holds(self.domain, role, queue)
        ]
        if not holders:
            return [], f"no active person holds role '{role}' in {self.domain}"
        available = [p for p in holders if p.available_at(self.at)]
        if self.needs_age_key:
            available = [p for p in available if age_keys(p, self.at)]
        free = [(p, self._remaining(p, day, fallback)) for p in available]
        free = [(p, left) for p, left in free if left is None or left > 0]
        free.sort(
            key=lambda pair: (
                self.load.get((pair[0].person_id, day), 0),
                self._backlog(pair[0].person_id, day),
                pair[0].person_id,
            )
        )
        why = (
            f"all {len(holders)} holder(s) of role '{role}' are unavailable"
            + (", without a key batches can be encrypted to" if self.needs_age_key else "")
            + " or at their daily capacity"
        )
        return free, why

    def choose(
        self,
        *,
        role: str,
        queue: str,
        day: date,
        fallback_capacity: int | None,
        slots: int,
        wanted: int,
    ) -> tuple[list[str], int] | str:
        """`slots` different people for a batch of up to `wanted` cases and how many they can
        take, or why nobody can (the cases then stay queued). Counts the load taken."""
        free, why = self._candidates(role, queue, day, fallback_capacity)
        if len(free) < slots:
            if slots == 2 and free:
                return (
                    f"four-eyes needs two different available people of role '{role}'; "
                    f"only {free[0][0].person_id} is available"
                )
            return why
        chosen = free[:slots]
        size = min([wanted] + [left for _, left in chosen if left is not None])
        for person, _ in chosen:
            key = (person.person_id, day)
            self.load[key] = self.load.get(key, 0) + size
        return [person.person_id for person, _ in chosen], size


def earlier_loads(
    con: duckdb.DuckDBPyConnection, domain: str, before: date, replaced: Sequence[date]
) -> dict[tuple[str, date], int]:
    """Cases per (current assignee, case day) on days before `before`, leaving out the
    `replaced` days (their batches are being exported again)."""
    rows = con.execute(
        "WITH cur AS (SELECT batch_id, assignee_id, row_number() OVER "
        "(PARTITION BY batch_id ORDER BY seq DESC) AS n FROM review_assignments WHERE domain = ?) "
        "SELECT cur.assignee_id, b.partition_date, sum(b.case_count) FROM cur "
        "JOIN review_batches b ON b.batch_id = cur.batch_id WHERE cur.n = 1 "
        "AND b.partition_date < ? "
        "AND b.partition_date NOT IN (SELECT unnest(?::DATE[])) GROUP BY ALL",
        [domain, before, list(replaced)],
    ).fetchall()
    return {(str(person), day): int(count) for person, day, count in rows}


def daily_loads(
    con: duckdb.DuckDBPyConnection, domain: str, days: Sequence[date], replaced: Sequence[date]
) -> dict[tuple[str, date], int]:
    """Cases per (current assignee, case day) on `days`, leaving out the batches of the
    `replaced` days (a re-export of a day replaces its batches, so they must not count)."""
    rows = con.execute(
        "WITH cur AS (SELECT batch_id, assignee_id, row_number() OVER "
        "(PARTITION BY batch_id ORDER BY seq DESC) AS n FROM review_assignments WHERE domain = ?) "
        "SELECT cur.assignee_id, b.partition_date, sum(b.case_count) FROM cur "
        "JOIN review_batches b ON b.batch_id = cur.batch_id WHERE cur.n = 1 "
        "AND b.partition_date IN (SELECT unnest(?::DATE[])) "
        "AND b.partition_date NOT IN (SELECT unnest(?::DATE[])) GROUP BY ALL",
        [domain, list(days), list(replaced)],
    ).fetchall()
    return {(str(person), day): int(count) for person, day, count in rows}


def assigner_for_days(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    at: datetime,
    days: Sequence[date],
    *,
    needs_age_key: bool,
    replaced: Sequence[date] = (),
) -> Assigner:
    """An `Assigner` over the registry as stored, counting what is already assigned on `days`
    (for exports that add batches to a day, such as escalations; `replaced`: days whose
    batches the export replaces)."""
    return Assigner(
        load_registry(con),
        domain,
        at,
        daily_loads(con, domain, days, replaced),
        needs_age_key=needs_age_key,
    )


def first_assignment_rows(
    batches: Sequence[tuple[str, str, str, int]], domain: str, at: datetime
) -> list[tuple[object, ...]]:
    """`review_assignments` rows (seq 1, by the pipeline) of (batch, queue, assignee, slot)."""
    return [
        (batch_id, 1, domain, queue, assignee, slot, PIPELINE, None, None, None, at)
        for batch_id, queue, assignee, slot in batches
    ]


def insert_assignments(con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[object, ...]]) -> None:
    """Append assignment rows (inside the caller's transaction)."""
    if rows:
        con.executemany(
            "INSERT INTO review_assignments (batch_id, seq, domain, queue, assignee_id, "
            "opinion_slot, assigned_by, signer_fingerprint, signature, reason, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            list(rows),
        )


def insert_first_assignments(
    con: duckdb.DuckDBPyConnection,
    batches: Sequence[tuple[str, str, str, int]],
    domain: str,
    at: datetime,
) -> None:
    """Record seq 1 for each (batch, queue, assignee, slot) not yet assigned: a re-run that
    reuses a batch keeps its first assignment (inside the caller's transaction)."""
    if not batches:
        return
    known = {
        str(row[0])
        for row in con.execute(
            "SELECT DISTINCT batch_id FROM review_assignments "
            "WHERE batch_id IN (SELECT unnest(?::VARCHAR[]))",
            [[batch[0] for batch in batches]],
        ).fetchall()
    }
    new = [batch for batch in batches if batch[0] not in known]
    insert_assignments(con, first_assignment_rows(new, domain, at))


# --- reassignment: a supervisor's signed act --------------------------------------------------


def reassignment_payload(
    batch_id: str, domain: str, new_assignee: str, reason: str, at: datetime, seq: int
) -> bytes:
    """The canonical bytes a supervisor signs (namespace `hitl-gate-review-admin`).

    `seq` is the assignment the act creates, so a signature can be used once: replayed later,
    it names a seq that is already taken.
    """
    return canonical_json(
        {
            "kind": REASSIGN_KIND,
            "batch_id": batch_id,
            "domain": domain,
            "new_assignee": new_assignee,
            "reason": reason,
            "at": at.astimezone(UTC).isoformat(),
            "seq": seq,
        }
    )


@dataclass(frozen=True)
class Reassignment:
    """A recorded reassignment: the new assignment and the supervisor who signed it."""

    assignment: Assignment
    previous_assignee: str
    supervisor_id: str
    fingerprint: str


def supervisor_roles(escalation_role: str | None) -> list[str]:
    """Who may reassign a queue's batch: the role its queue escalates to, or an admin."""
    return [r for r in (escalation_role, SUPERVISOR_ADMIN_ROLE) if r]


@dataclass(frozen=True)
class Seat:
    """A batch as a reassignment sees it: where it is, who holds it, and who holds the other
    opinion of its four-eyes cases (person -> their batch; empty for a single-review batch)."""

    batch_id: str
    domain: str
    queue: str
    queue_role: str
    holder: str
    other_opinion: Mapping[str, str] = field(default_factory=dict)


def other_opinion_holders(
    con: duckdb.DuckDBPyConnection, batch_ids: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Per batch of `batch_ids`, the current holders of the batches carrying the other opinion
    of its four-eyes cases (person -> that batch, the first by id), in one query."""
    rows = con.execute(
        "WITH wanted AS (SELECT unnest(?::VARCHAR[]) AS batch_id), pairs AS ("
        "SELECT DISTINCT s.batch_id AS batch, s.first_batch_id AS other "
        "FROM review_second_opinion_cases s SEMI JOIN wanted w ON w.batch_id = s.batch_id "
        "UNION SELECT DISTINCT s.first_batch_id, s.batch_id "
        "FROM review_second_opinion_cases s SEMI JOIN wanted w ON w.batch_id = s.first_batch_id) "
        "SELECT p.batch, p.other, arg_max(a.assignee_id, a.seq) FROM pairs p "
        "JOIN review_assignments a ON a.batch_id = p.other GROUP BY ALL ORDER BY ALL",
        [list(batch_ids)],
    ).fetchall()
    found: dict[str, dict[str, str]] = {}
    for batch, other, holder in rows:
        found.setdefault(str(batch), {}).setdefault(str(holder), str(other))
    return found


def assignee_refusal(
    registry: Registry, seat: Seat, new_assignee: str, supervisor_id: str, now: datetime
) -> str | None:
    """Why `new_assignee` may not take over `seat` from `supervisor_id`'s hands, or None.

    The one rule for the person a batch goes to: every reassignment applies it, and the
    portal offers only the people it lets through (`eligible_assignees`)."""
    person = registry.people.get(new_assignee)
    if person is None or not person.available_at(now):
        return f"{new_assignee} is not an active, available person"
    if not person.holds(seat.domain, seat.queue_role, seat.queue):
        return f"{new_assignee} does not hold role '{seat.queue_role}' for queue '{seat.queue}'"
    if new_assignee == seat.holder:
        return f"batch {seat.batch_id} is already assigned to {new_assignee}"
    if new_assignee == supervisor_id:
        return "a supervisor cannot reassign a batch to themselves"
    if new_assignee in seat.other_opinion:
        return (
            f"{new_assignee} holds the other opinion of these four-eyes cases (batch "
            f"{seat.other_opinion[new_assignee]}): both opinions cannot be one person's"
        )
    return None


def eligible_assignees(
    registry: Registry, seat: Seat, supervisor_id: str, now: datetime
) -> list[str]:
    """Everyone `assignee_refusal` lets take over `seat`, by id."""
    return sorted(
        person_id
        for person_id in registry.people
        if assignee_refusal(registry, seat, person_id, supervisor_id, now) is None
    )


def _open_reassignment(
    con: duckdb.DuckDBPyConnection, payload: bytes, field: str, expected: str
) -> tuple[dict[str, object], str, str]:
    """The payload's fields, batch and domain, once it is a reassignment (`field` names
    `expected`) of a batch that has an assignment to change."""
    fields = _payload_fields(payload)
    if fields.get(field) != expected:
        what = "a reassignment" if field == "kind" else "a portal reassignment"
        raise AssignmentError(f"not {what} ({field} {fields.get(field)!r})")
    batch_id, domain = str(fields.get("batch_id")), str(fields.get("domain"))
    if current_assignee(con, batch_id) is None:
        raise AssignmentError(f"batch {batch_id} has no assignment to change")
    return fields, batch_id, domain


def reassign(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    payload: bytes,
    signature: str | None,
    *,
    queue_role: str,
    escalation_role: str | None,
    now: datetime,
) -> Reassignment:
    """Check a signed reassignment and append it as the batch's next assignment.

    Refused when unsigned or wrongly signed; when the signer holds neither the escalation role
    of the batch's queue nor `admin` in the domain; when the payload's seq is not the next one
    (replay) or its time is far from now; when the new assignee is not an active, available
    holder of the queue's role, is the current assignee or the signer; or when the new assignee
    holds the other opinion of the same four-eyes cases.
    """
    fields, batch_id, domain = _open_reassignment(con, payload, "kind", REASSIGN_KIND)
    try:
        signer = verify_act(
            registry,
            payload,
            signature,
            REVIEW_ADMIN,
            at=now,
            domain=domain,
            roles=supervisor_roles(escalation_role),
            what=f"reassignment of batch {batch_id}",
        )
    except IdentityError as error:
        raise AssignmentError(str(error)) from error
    return _apply_reassignment(
        con, registry, fields, signer.person_id, signer.fingerprint, signature,
        queue_role=queue_role, now=now,
    )  # fmt: skip


def reassign_in_portal(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    payload: bytes,
    signature: str | None,
    *,
    queue_role: str,
    escalation_role: str | None,
    now: datetime,
) -> Reassignment:
    """A reassignment by a supervisor signed in to the portal, attested by the portal.

    The supervisor holds no private key in a browser, so, as for portal verdicts, the portal
    signs (namespace `hitl-gate-portal`, its key holding `*:portal`) a payload (`act`
    `portal_reassign`) naming the supervisor, the key their credential is bound to, the session
    and the same fields as a signed reassignment (batch, new assignee, reason, time, seq). The
    supervisor must still hold the escalation role of the queue or `admin` and that key must
    still be theirs; every other check is `reassign`'s. The row names the supervisor and their
    bound key; the attestation is kept in `portal_reassignments` for verification.
    """
    fields, batch_id, domain = _open_reassignment(con, payload, "act", PORTAL_REASSIGN_ACT)
    try:
        verify_act(
            registry, payload, signature, PORTAL, at=now, domain="*", roles=(PORTAL_SIGNER,),
            what=f"portal attestation of the reassignment of batch {batch_id}",
        )  # fmt: skip
    except IdentityError as error:
        raise AssignmentError(str(error)) from error
    supervisor_id = str(fields.get("person_id"))
    fingerprint = str(fields.get("person_fingerprint"))
    supervisor = registry.people.get(supervisor_id)
    if supervisor is None or not supervisor.is_active(now):
        raise AssignmentError(f"{supervisor_id} is not an active person")
    if not any(supervisor.holds(domain, role) for role in supervisor_roles(escalation_role)):
        raise AssignmentError(
            f"{supervisor_id} holds neither {' nor '.join(supervisor_roles(escalation_role))} "
            f"in {domain}: may not reassign batch {batch_id}"
        )
    if fingerprint not in {k.fingerprint for k in supervisor.usable_keys(now)}:
        raise AssignmentError(f"{fingerprint} is not a usable key of {supervisor_id}")
    done = _apply_reassignment(
        con, registry, fields, supervisor_id, fingerprint, signature,
        queue_role=queue_role, now=now,
    )  # fmt: skip
    con.execute(
        "INSERT INTO portal_reassignments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [batch_id, done.assignment.seq, supervisor_id, fingerprint,
         str(fields.get("session", "")), payload.decode("utf-8"), signature, now],
    )  # fmt: skip
    return done


def _payload_fields(payload: bytes) -> dict[str, object]:
    try:
        fields = json.loads(payload)
    except ValueError as error:
        raise AssignmentError(f"reassignment payload is not JSON: {error}") from error
    if not isinstance(fields, dict) or canonical_json(fields) != payload:
        raise AssignmentError("reassignment payload is not in canonical form")
    return fields


def _apply_reassignment(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    fields: dict[str, object],
    supervisor_id: str,
    fingerprint: str,
    signature: str | None,
    *,
    queue_role: str,
    now: datetime,
) -> Reassignment:
    """The checks every reassignment passes once its signer is known, then the new row."""
    batch_id, domain = str(fields.get("batch_id")), str(fields.get("domain"))
    new_assignee = str(fields.get("new_assignee"))
    current = current_assignee(con, batch_id)
    if current is None:
        raise AssignmentError(f"batch {batch_id} has no assignment to change")
    try:
        at = parse_time(str(fields.get("at")))
    except RegistryError as error:
        raise AssignmentError(f"reassignment of batch {batch_id}: {error}") from error
    if not str(fields.get("reason", "")).strip():
        raise AssignmentError(f"reassignment of batch {batch_id} gives no reason")
    if abs(at - now) > MAX_CLOCK_SKEW:
        raise AssignmentError(f"reassignment signed for {at.isoformat()}: stale or replayed")
    if fields.get("seq") != current.seq + 1:
        raise AssignmentError(
            f"reassignment names assignment {fields.get('seq')} of batch {batch_id}, but the "
            f"next is {current.seq + 1} (replayed or out of date)"
        )
    seat = Seat(
        batch_id, domain, current.queue, queue_role, current.assignee_id,
        other_opinion_holders(con, [batch_id]).get(batch_id, {}),
    )  # fmt: skip
    refusal = assignee_refusal(registry, seat, new_assignee, supervisor_id, now)
    if refusal is not None:
        raise AssignmentError(refusal)
    assignment = Assignment(
        batch_id, new_assignee, current.queue, current.opinion_slot, current.seq + 1
    )
    insert_assignments(
        con,
        [
            (
                batch_id,
                assignment.seq,
                domain,
                current.queue,
                new_assignee,
                current.opinion_slot,
                supervisor_id,
                fingerprint,
                signature,
                str(fields.get("reason", "")),
                now,
            )
        ],
    )
    return Reassignment(assignment, current.assignee_id, supervisor_id, fingerprint)
