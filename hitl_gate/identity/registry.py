"""The people registry: who may act, with which keys, in which roles: the fold of signed acts.

The registry is never edited in place. Each change (a person added, a key added, rotated or
revoked, roles granted, availability declared) is an *act* signed by an administrator's key and
appended to the `people_acts` log (`hitl_gate.identity.store`); the registry is what those acts
add up to, replayed in order. Each act names the one before it (`previous`), so acts cannot be
reordered or dropped from the middle, and a key belongs to one person for ever, so two ids
sharing a key can never count as two people.

The first act is the bootstrap: it adds the first administrator and is signed by that
administrator's own key (optionally only one of the fingerprints the deployment pins).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from hitl_gate.identity.keys import KeyFormatError, PublicKey, parse_public_key

ADMIN_DOMAIN = "*"
ADMIN_ROLE = "admin"
PERSON_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
ACT_KINDS = frozenset(
    {
        "add_person",
        "add_key",
        "revoke_key",
        "revoke_person",
        "rotate_key",
        "set_grants",
        "set_availability",
    }
)


class RegistryError(ValueError):
    """An act the registry refuses, or a key or person that may not act."""


def parse_time(value: str) -> datetime:
    """An ISO-8601 instant with its offset (naive times are refused: acts cross time zones)."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as error:
        raise RegistryError(f"not an ISO-8601 time: {value!r}") from error
    if parsed.tzinfo is None:
        raise RegistryError(f"time without a UTC offset: {value!r}")
    return parsed.astimezone(UTC)


def _optional_time(value: Any) -> datetime | None:
    return None if value in (None, "") else parse_time(str(value))


@dataclass(frozen=True)
class Grant:
    """A role held in one domain (`*` for the deployment), optionally limited to some queues."""

    domain: str
    role: str
    queues: tuple[str, ...] | None = None

    def covers(self, domain: str, role: str, queue: str | None = None) -> bool:
        if self.role != role or self.domain not in (domain, ADMIN_DOMAIN):
            return False
        return queue is None or self.queues is None or queue in self.queues

    def as_text(self) -> str:
        queues = "" if self.queues is None else "[" + ",".join(self.queues) + "]"
        return f"{self.domain}:{self.role}{queues}"


@dataclass(frozen=True)
class PersonKey:
    """A registered key with its validity window and, once revoked, when."""

    key: PublicKey
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    def refusal(self, at: datetime) -> str | None:
        """Why this key may not sign at `at` (None: it may)."""
        if self.revoked_at is not None and at >= self.revoked_at:
            return f"key {self.fingerprint} was revoked at {self.revoked_at.isoformat()}"
        if self.valid_before is not None and at >= self.valid_before:
            return f"key {self.fingerprint} expired at {self.valid_before.isoformat()}"
        if self.valid_after is not None and at < self.valid_after:
            return f"key {self.fingerprint} is not valid before {self.valid_after.isoformat()}"
        return None


@dataclass(frozen=True)
class Unavailability:
    """A window in which a person is not assigned work (leave, training)."""

    starts: datetime
    ends: datetime


@dataclass(frozen=True)
class Person:
    """Someone who may act: display name, grants, keys, availability, and revocation."""

    person_id: str
    display_name: str
    grants: tuple[Grant, ...]
    keys: tuple[PersonKey, ...]
    added_at: datetime
    revoked_at: datetime | None = None
    daily_capacity: int | None = None
    unavailable: tuple[Unavailability, ...] = ()

    def is_active(self, at: datetime) -> bool:
        return self.added_at <= at and (self.revoked_at is None or at < self.revoked_at)

    def holds(self, domain: str, role: str, queue: str | None = None) -> bool:
        return any(grant.covers(domain, role, queue) for grant in self.grants)

    @property
    def is_admin(self) -> bool:
        return any(g.domain == ADMIN_DOMAIN and g.role == ADMIN_ROLE for g in self.grants)

    def available_at(self, at: datetime) -> bool:
        return self.is_active(at) and not any(w.starts <= at < w.ends for w in self.unavailable)

    def usable_keys(self, at: datetime) -> tuple[PersonKey, ...]:
        return tuple(k for k in self.keys if k.refusal(at) is None)


@dataclass(frozen=True)
class Signer:
    """Who a verified signature belongs to: the person and the exact key (the identity)."""

    person_id: str
    fingerprint: str


def parse_grant(text: str) -> Grant:
    """`domain:role` or `domain:role[queue,queue]` (`*:admin` administers the deployment)."""
    match = re.fullmatch(r"([A-Za-z0-9_*-]+):([A-Za-z0-9_-]+)(?:\[([A-Za-z0-9_,-]*)\])?", text)
    if match is None:
        raise RegistryError(f"not a grant: {text!r} (expected domain:role or domain:role[q1,q2])")
    domain, role, queues = match.groups()
    listed = None if queues is None else tuple(q for q in queues.split(",") if q)
    return Grant(domain=domain, role=role, queues=listed)


def _grants(payload: Mapping[str, Any]) -> tuple[Grant, ...]:
    return tuple(parse_grant(str(g)) for g in payload.get("grants", []))


def _key(entry: Mapping[str, Any]) -> PersonKey:
    try:
        key = parse_public_key(str(entry["public_key"]))
    except (KeyError, KeyFormatError) as error:
        raise RegistryError(f"bad public key: {error}") from error
    return PersonKey(
        key=key,
        valid_after=_optional_time(entry.get("valid_after")),
        valid_before=_optional_time(entry.get("valid_before")),
    )


@dataclass(frozen=True)
class Registry:
    """The registry as of its last act (`head`, the act id the next act must name)."""

    people: Mapping[str, Person] = field(default_factory=dict)
    head: str = ""
    acts: int = 0

    def key_owner(self, fingerprint: str) -> tuple[Person, PersonKey] | None:
        for person in self.people.values():
            for key in person.keys:
                if key.fingerprint == fingerprint:
                    return person, key
        return None

    def signer_at(self, fingerprint: str, at: datetime) -> tuple[Person, PersonKey]:
        """The person whose key `fingerprint` may sign at `at`, or why not (`RegistryError`)."""
        owner = self.key_owner(fingerprint)
        if owner is None:
            raise RegistryError(f"key {fingerprint} is not registered to anyone")
        person, key = owner
        if at < person.added_at:
            raise RegistryError(f"{person.person_id} was not registered yet at {at.isoformat()}")
        if person.revoked_at is not None and at >= person.revoked_at:
            revoked = person.revoked_at.isoformat()
            raise RegistryError(f"{person.person_id} was revoked at {revoked}")
        reason = key.refusal(at)
        if reason is not None:
            raise RegistryError(f"{reason} (registered to {person.person_id})")
        return person, key

    def holders(self, domain: str, role: str, at: datetime) -> list[Person]:
        """Active people holding `role` in `domain` at `at`, by id."""
        return sorted(
            (p for p in self.people.values() if p.is_active(at) and p.holds(domain, role)),
            key=lambda p: p.person_id,
        )

    def allowed_signers(self, namespace: str) -> str:
        """The registry as a git-style `allowed_signers` file (for `ssh-keygen -Y verify`)."""
        lines = []
        for person in sorted(self.people.values(), key=lambda p: p.person_id):
            for key in person.keys:
                options = [f'namespaces="{namespace}"']
                if key.valid_after is not None:
                    options.append(f"valid-after={key.valid_after:%Y%m%d%H%M%SZ}")
                ends = [t for t in (key.valid_before, key.revoked_at, person.revoked_at) if t]
                if ends:
                    options.append(f"valid-before={min(ends):%Y%m%d%H%M%SZ}")
                lines.append(f"{person.person_id} {','.join(options)} {key.key.openssh}")
        return "\n".join(lines) + ("\n" if lines else "")

    def apply(self, payload: Mapping[str, Any], signer_fingerprint: str) -> Registry:
        """The registry after one act, checked: previous act, signer's authority, the change."""
        kind = str(payload.get("kind", ""))
        if kind not in ACT_KINDS:
            raise RegistryError(f"unknown act kind {kind!r}")
        if str(payload.get("previous", "")) != self.head:
            raise RegistryError("act does not follow the last act (replayed or reordered)")
        at = parse_time(str(payload.get("at", "")))
        if self.acts == 0:
            return self._bootstrap(payload, signer_fingerprint, at)
        admin, _ = self.signer_at(signer_fingerprint, at)
        if not admin.is_admin:
            raise RegistryError(f"{admin.person_id} is not an administrator")
        people = dict(self.people)
        people.update(_changed_people(self, kind, payload, at))
        return Registry(people=people, head=self.head, acts=self.acts)

    def _bootstrap(self, payload: Mapping[str, Any], signer: str, at: datetime) -> Registry:
        if payload.get("kind") != "add_person":
            raise RegistryError("the first act must add the first administrator")
        person = _new_person(self, payload, at)
        if not person.is_admin:
            raise RegistryError("the first person added must hold *:admin")
        if signer not in {k.fingerprint for k in person.keys}:
            raise RegistryError("the first administrator must sign their own addition")
        return Registry(people={person.person_id: person}, head=self.head, acts=self.acts)

    def after(self, act_id: str) -> Registry:
        return replace(self, head=act_id, acts=self.acts + 1)


def _person(registry: Registry, payload: Mapping[str, Any]) -> Person:
    person_id = str(payload.get("person_id", ""))
    person = registry.people.get(person_id)
    if person is None:
        raise RegistryError(f"no person {person_id!r} in the registry")
    return person


def _check_new_keys(registry: Registry, keys: Iterable[PersonKey]) -> None:
    seen: set[str] = set()
    for key in keys:
        owner = registry.key_owner(key.fingerprint)
        if owner is not None or key.fingerprint in seen:
            holder = owner[0].person_id if owner else "this act"
            raise RegistryError(
                f"key {key.fingerprint} is already registered to {holder}: one key, one person"
            )
        seen.add(key.fingerprint)


def _new_person(registry: Registry, payload: Mapping[str, Any], at: datetime) -> Person:
    person_id = str(payload.get("person_id", ""))
    if PERSON_ID.fullmatch(person_id) is None:
        raise RegistryError(f"person id {person_id!r} must match {PERSON_ID.pattern}")
    if person_id in registry.people:
        raise RegistryError(f"person {person_id!r} already exists (ids are never reused)")
    keys = tuple(_key(k) for k in payload.get("keys", []))
    if not keys:
        raise RegistryError(f"{person_id} needs at least one public key")
    _check_new_keys(registry, keys)
    return Person(
        person_id=person_id,
        display_name=str(payload.get("display_name", "")),
        grants=_grants(payload),
        keys=keys,
        added_at=at,
    )


def _revoked_key(person: Person, fingerprint: str, at: datetime) -> Person:
    if fingerprint not in {k.fingerprint for k in person.keys}:
        raise RegistryError(f"{person.person_id} has no key {fingerprint}")
    keys = tuple(
        replace(k, revoked_at=at) if k.fingerprint == fingerprint and not k.revoked_at else k
        for k in person.keys
    )
    return replace(person, keys=keys)


def _changed_people(
    registry: Registry, kind: str, payload: Mapping[str, Any], at: datetime
) -> dict[str, Person]:
    if kind == "add_person":
        person = _new_person(registry, payload, at)
        return {person.person_id: person}
    person = _person(registry, payload)
    if kind == "add_key":
        key = _key(payload)
        _check_new_keys(registry, [key])
        return {person.person_id: replace(person, keys=(*person.keys, key))}
    if kind == "revoke_key":
        return {person.person_id: _revoked_key(person, str(payload.get("fingerprint")), at)}
    if kind == "revoke_person":
        return {person.person_id: replace(person, revoked_at=person.revoked_at or at)}
    if kind == "rotate_key":
        new_key = replace(_key(payload), valid_after=at)
        _check_new_keys(registry, [new_key])
        retired = _revoked_key(person, str(payload.get("old_fingerprint")), at)
        return {person.person_id: replace(retired, keys=(*retired.keys, new_key))}
    if kind == "set_grants":
        return {person.person_id: replace(person, grants=_grants(payload))}
    capacity = payload.get("daily_capacity")
    windows = tuple(
        Unavailability(parse_time(str(w["starts"])), parse_time(str(w["ends"])))
        for w in payload.get("unavailable", [])
    )
    return {
        person.person_id: replace(
            person,
            daily_capacity=None if capacity is None else int(capacity),
            unavailable=windows,
        )
    }
