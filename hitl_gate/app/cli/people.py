"""People commands: `hitl people add|add-key|list|revoke|rotate|grant|availability`.

Each change is a signed act appended to the `people_acts` log (hitl_gate/identity/store.py):
drafted here, signed with the administrator's key (`--signing-key`, the private key or a `.pub`
whose private half is in ssh-agent) and checked against the registry as stored before it is
appended. The very first act adds the first administrator (`*:admin`) and is signed by that
person's own key. Only public keys are ever read; see docs/people.md.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hitl_gate.app.cli.common import resolve_paths
from hitl_gate.app.cli.signing import add_signing_key


def _public_key(value: str) -> str:
    """An OpenSSH public key line, from a `.pub` file or given inline; refuses a private key."""
    from hitl_gate.identity.keys import KeyFormatError, parse_public_key

    path = Path(value).expanduser()
    text = path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else value
    if "PRIVATE KEY" in text:
        raise SystemExit(f"REFUSED: {value} is a private key; give the public key (.pub)")
    try:
        parse_public_key(text)
    except KeyFormatError as exc:
        raise SystemExit(f"REFUSED: {value}: not an OpenSSH public key: {exc}") from exc
    return text


def _key_entry(args: argparse.Namespace) -> dict[str, Any]:
    entry: dict[str, Any] = {"public_key": _public_key(args.public_key)}
    for name in ("valid_after", "valid_before"):
        value = getattr(args, name, None)
        if value:
            entry[name] = _time(value, f"--{name.replace('_', '-')}")
    return entry


def _time(value: str, option: str) -> str:
    from hitl_gate.identity.registry import RegistryError, parse_time

    try:
        return parse_time(value).isoformat()
    except RegistryError as exc:
        raise SystemExit(f"REFUSED: {option}: {exc}") from exc


def _grants(values: list[str] | None) -> list[str]:
    from hitl_gate.identity.registry import RegistryError, parse_grant

    try:
        return [parse_grant(g).as_text() for g in values or []]
    except RegistryError as exc:
        raise SystemExit(f"REFUSED: {exc}") from exc


def _append(args: argparse.Namespace, kind: str, **fields: Any) -> None:
    """Draft, sign and append one registry act; one line on success or refusal."""
    from hitl_gate.core.database import audit_connection
    from hitl_gate.identity.registry import RegistryError
    from hitl_gate.identity.signatures import SignatureError
    from hitl_gate.identity.store import append_act, draft_act, load_registry, sign_act

    key = Path(args.signing_key).expanduser()
    what = f"people {kind.replace('_', '-')} {fields.get('person_id', '')}".strip()
    if not key.is_file():
        raise SystemExit(f"REFUSED: {what}: no key file at {key}")
    with audit_connection(resolve_paths(args).audit_db) as con:
        try:
            payload = draft_act(load_registry(con), kind, **fields)
            act = sign_act(payload, key)
            registry = append_act(con, act)
        except (RegistryError, SignatureError) as exc:
            raise SystemExit(f"REFUSED: {what}: {exc}") from exc
    print(f"{what}: recorded as act #{registry.acts} ({act.act_id[:12]})")


def cmd_add(args: argparse.Namespace) -> None:
    """Register a person with one key and their grants (the first must be `*:admin`)."""
    _append(
        args,
        "add_person",
        person_id=args.person_id,
        display_name=args.name,
        grants=_grants(args.grant),
        keys=[_key_entry(args)],
    )


def cmd_add_key(args: argparse.Namespace) -> None:
    """Register one more key for a person (a second device)."""
    _append(args, "add_key", person_id=args.person_id, **_key_entry(args))


def cmd_revoke(args: argparse.Namespace) -> None:
    """Revoke one key (`--key FINGERPRINT`) or the whole person: from now on they sign nothing."""
    if args.key:
        _append(args, "revoke_key", person_id=args.person_id, fingerprint=args.key)
    else:
        _append(args, "revoke_person", person_id=args.person_id)


def cmd_rotate(args: argparse.Namespace) -> None:
    """Replace a key: the old one is revoked and the new one valid from the same instant."""
    _append(
        args,
        "rotate_key",
        person_id=args.person_id,
        old_fingerprint=args.old,
        public_key=_public_key(args.public_key),
    )


def cmd_grant(args: argparse.Namespace) -> None:
    """Set a person's grants (replaces them all: the act states the whole set)."""
    _append(args, "set_grants", person_id=args.person_id, grants=_grants(args.grant))


def cmd_availability(args: argparse.Namespace) -> None:
    """Set a person's daily review capacity and unavailability windows (used by assignment)."""
    windows = []
    for window in args.unavailable or []:
        starts, sep, ends = window.partition("/")
        if not sep:
            raise SystemExit(f"REFUSED: --unavailable {window!r}: expected START/END (ISO times)")
        windows.append(
            {"starts": _time(starts, "--unavailable"), "ends": _time(ends, "--unavailable")}
        )
    if args.daily_capacity is not None and args.daily_capacity < 0:
        raise SystemExit("REFUSED: --daily-capacity must be 0 or more")
    _append(
        args,
        "set_availability",
        person_id=args.person_id,
        daily_capacity=args.daily_capacity,
        unavailable=windows,
    )


def cmd_list(args: argparse.Namespace) -> None:
    """People, grants and keys with their status now; or the git-style allowed_signers file."""
    from hitl_gate.core.database import audit_connection
    from hitl_gate.identity.registry import RegistryError
    from hitl_gate.identity.store import load_registry

    db = resolve_paths(args).audit_db
    if not db.exists():
        raise SystemExit(f"no audit database at {db}: nobody is registered")
    with audit_connection(db, read_only=True) as con:
        try:
            registry = load_registry(con)
        except RegistryError as exc:
            raise SystemExit(f"REFUSED: the people registry does not verify: {exc}") from exc
    if args.allowed_signers:
        print(registry.allowed_signers(args.namespace), end="")
        return
    now = datetime.now(UTC)
    if not registry.people:
        print("nobody is registered (hitl people add ... '*:admin' signed by that person's key)")
    for person in sorted(registry.people.values(), key=lambda p: p.person_id):
        state = "active" if person.is_active(now) else "REVOKED"
        grants = ", ".join(g.as_text() for g in person.grants) or "no grants"
        capacity = "" if person.daily_capacity is None else f"; {person.daily_capacity}/day"
        print(f"{person.person_id} ({person.display_name}) {state}: {grants}{capacity}")
        for key in person.keys:
            refusal = key.refusal(now)
            status = "valid" if refusal is None else _key_status(refusal)
            print(f"  {key.key.key_type} {key.fingerprint} {status}")
        for window in person.unavailable:
            print(f"  unavailable {window.starts.isoformat()} to {window.ends.isoformat()}")
    print(f"{len(registry.people)} people, {registry.acts} acts (head {registry.head[:12]})")


def _key_status(refusal: str) -> str:
    for word in ("revoked", "expired"):
        if word in refusal:
            return word
    return "not yet valid"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `people` command group."""
    from hitl_gate.identity.signatures import VERDICTS

    group = sub.add_parser("people", help="the people registry (signed acts)").add_subparsers(
        dest="people_command", required=True
    )

    def person(name: str, text: str, func: Any) -> argparse.ArgumentParser:
        parser = group.add_parser(name, help=text)
        parser.add_argument("person_id")
        add_signing_key(parser)
        parser.set_defaults(func=func)
        return parser

    add = person("add", "register a person with a key and grants", cmd_add)
    add.add_argument("--name", required=True, help="display name")
    add.add_argument("--public-key", required=True, help="a .pub file or an OpenSSH key line")
    add.add_argument("--grant", action="append", help="domain:role or domain:role[q1,q2]")
    add.add_argument("--valid-after", help="ISO time with offset")
    add.add_argument("--valid-before", help="ISO time with offset (the key expires)")

    add_key = person("add-key", "register another key for a person", cmd_add_key)
    add_key.add_argument("--public-key", required=True)
    add_key.add_argument("--valid-after")
    add_key.add_argument("--valid-before")

    revoke = person("revoke", "revoke a person, or one key with --key", cmd_revoke)
    revoke.add_argument("--key", help="the fingerprint (SHA256:...) of the key to revoke")

    rotate = person("rotate", "replace a key: revoke --old, register --public-key", cmd_rotate)
    rotate.add_argument("--old", required=True, help="fingerprint of the key replaced")
    rotate.add_argument("--public-key", required=True)

    grant = person("grant", "set a person's grants (the whole set)", cmd_grant)
    grant.add_argument("--grant", action="append", help="domain:role; none: no grants")

    availability = person("availability", "daily capacity, unavailability", cmd_availability)
    availability.add_argument("--daily-capacity", type=int)
    availability.add_argument(
        "--unavailable", action="append", help="START/END in ISO times (leave, training)"
    )

    listing = group.add_parser("list", help="people, grants, keys and their status")
    listing.add_argument(
        "--allowed-signers", action="store_true", help="print the git-style allowed_signers file"
    )
    listing.add_argument("--namespace", default=VERDICTS, help="namespace of --allowed-signers")
    listing.set_defaults(func=cmd_list)
