"""Which checkpoint keys `verify` trusts: a pinned public key, then its signed hand-overs.

The trust anchor is configured outside the home (`HITL_AUDIT_TRUSTED_KEY`, or a file named by
`HITL_AUDIT_TRUSTED_KEY_FILE`, or `hitl audit verify --public-key`); a key found in the home is
never trusted, since whoever can write the home could replace the key and re-sign everything.
An anchor file inside the home is refused for the same reason. Without an anchor, verify
checks each checkpoint against the key it names: self-consistency only, and it says so.

Rotation is a hand-over (`sign_handover`): the old key signs "checkpoints after seq N are
signed by key K" and K signs the same message, proving it is held; `KeySchedule` follows the
hand-overs from the pinned key, so exactly one key is valid for each checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from hitl_gate.audit.bundle_check import HANDOVER_FIELDS, HANDOVER_GLOBAL, handover_message
from hitl_gate.audit.keys import public_key_from_hex, public_key_hex
from hitl_gate.audit.seal import checkpoint_message
from hitl_gate.audit.signer import CheckpointSigner
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import (
    AUDIT_TRUSTED_KEY_ENV,
    AUDIT_TRUSTED_KEY_FILE_ENV,
    AuditKeySettings,
)


class TrustAnchorError(ValueError):
    """The configured trust anchor cannot be used; the message names the setting."""


@dataclass(frozen=True)
class TrustAnchor:
    """The pinned public key (hex) and where it was configured (for messages)."""

    key: str
    source: str


def load_trust_anchor(
    keys: AuditKeySettings, paths: HitlPaths, override: str | None = None
) -> TrustAnchor | None:
    """The anchor: `override` (--public-key), else the key setting, else the key file.

    A key file inside the home is refused: the writer of the home could replace it.
    """
    if override:
        return TrustAnchor(_checked(override.strip().lower(), "--public-key"), "--public-key")
    if keys.trusted_key:
        return TrustAnchor(keys.trusted_key, AUDIT_TRUSTED_KEY_ENV)
    path = keys.trusted_key_file
    if path is None:
        return None
    where = f"{AUDIT_TRUSTED_KEY_FILE_ENV}={path}"
    if path.resolve().is_relative_to(paths.home):
        raise TrustAnchorError(
            f"{where} lies inside the home {paths.home}: whoever writes the home could replace "
            "it; keep the trusted key outside (docs/key_custody.md)"
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TrustAnchorError(f"{where}: cannot read ({exc.strerror})") from exc
    words = [w.strip() for w in lines if w.strip() and not w.strip().startswith("#")]
    if len(words) != 1:
        raise TrustAnchorError(f"{where}: expected one public key (64 hex digits)")
    return TrustAnchor(_checked(words[0].lower(), where), where)


def _checked(text: str, where: str) -> str:
    try:
        public_key_from_hex(text)
    except ValueError as exc:
        raise TrustAnchorError(f"{where}: not an Ed25519 public key in hex") from exc
    return text


def sign_handover(
    con: duckdb.DuckDBPyConnection,
    old: CheckpointSigner,
    new: CheckpointSigner,
    checkpoint_dir: Path,
) -> dict[str, Any]:
    """Hand the checkpoints after the newest signed one over from `old` to `new`: those of
    the single chain after its newest checkpoint, and the global checkpoints of the per-run
    segments after the newest global one (`after_global_seq`, signed with the rest).

    Recorded in `audit_key_handovers` and as a file beside the checkpoints; from now on the
    installation must be configured to sign with `new` (docs/key_custody.md, "Rotation").
    """
    after, after_global = con.execute(
        "SELECT (SELECT coalesce(max(last_seq), 0) FROM audit_checkpoints), "
        "(SELECT coalesce(max(global_seq), 0) FROM audit_global_checkpoints)"
    ).fetchall()[0]
    record: dict[str, Any] = {
        "after_seq": int(after),
        "old_public_key": public_key_hex(old),
        "new_public_key": public_key_hex(new),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        HANDOVER_GLOBAL: int(after_global),
    }
    if record["old_public_key"] == record["new_public_key"]:
        raise ValueError("key hand-over: the new key is the old key")
    message = handover_message(record)
    record["old_signature"] = old.sign(message).hex()
    record["new_signature"] = new.sign(message).hex()
    con.execute(
        "INSERT INTO audit_key_handovers (after_seq, old_public_key, new_public_key, "
        "created_at, old_signature, new_signature, after_global_seq) VALUES ($after_seq, "
        "$old_public_key, $new_public_key, $created_at, $old_signature, $new_signature, "
        "$after_global_seq)",
        record,
    )
    _write_handover_file(checkpoint_dir, record)
    return record


def handover_file(checkpoint_dir: Path, after_seq: int) -> Path:
    return checkpoint_dir / f"key-handover-{after_seq:012d}.json"


def _write_handover_file(checkpoint_dir: Path, record: dict[str, Any]) -> None:
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    target = handover_file(checkpoint_dir, int(record["after_seq"]))
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)


@dataclass
class KeySchedule:
    """The key valid for each range of sequence numbers, from the anchor through hand-overs.

    `problems` lists hand-overs that were broken, unsigned by the key then valid, or found in
    only one of the database and the checkpoint folder; a broken hand-over is not followed.
    """

    anchor: TrustAnchor | None
    steps: list[tuple[int, str]] = field(default_factory=list)  # (after_seq, key from then)
    problems: list[tuple[int, str]] = field(default_factory=list)
    # (after_global_seq, key from then): the same hand-overs on the global log of segments
    global_steps: list[tuple[int, str]] = field(default_factory=list)

    def key_for(self, first_seq: int) -> str | None:
        """The one key that may sign a checkpoint starting at `first_seq` (None: no anchor)."""
        if self.anchor is None:
            return None
        key = self.anchor.key
        for after_seq, new in self.steps:
            if first_seq > after_seq:
                key = new
        return key

    def key_for_global(self, global_seq: int) -> str | None:
        """The one key that may sign global checkpoint `global_seq` (None: no anchor)."""
        if self.anchor is None:
            return None
        key = self.anchor.key
        for after_global_seq, new in self.global_steps:
            if global_seq > after_global_seq:
                key = new
        return key


def key_schedule(
    con: duckdb.DuckDBPyConnection, checkpoint_dir: Path, anchor: TrustAnchor | None
) -> KeySchedule:
    """Follow the hand-overs (database and files, which must agree) from `anchor`."""
    schedule = KeySchedule(anchor)
    in_db: dict[int, dict[str, Any]] = {}
    if con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND table_name = 'audit_key_handovers'"
    ).fetchall()[0][0]:  # a database opened read-only from before the table existed has none
        rows = con.execute("SELECT * FROM audit_key_handovers ORDER BY after_seq").fetchall()
        names = [d[0] for d in con.description]
        in_db = {int(r[0]): dict(zip(names, r, strict=True)) for r in rows}
    on_disk: dict[int, dict[str, Any]] = {}
    for path in (
        sorted(checkpoint_dir.glob("key-handover-*.json")) if checkpoint_dir.exists() else []
    ):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            on_disk[int(record["after_seq"])] = record
        except (ValueError, KeyError) as exc:
            schedule.problems.append((0, f"{path}: unreadable key hand-over ({exc})"))
    for seq in sorted(in_db.keys() ^ on_disk.keys()):
        where = "the database" if seq in in_db else "the checkpoint folder"
        schedule.problems.append((seq, f"key hand-over after seq {seq} is only in {where}"))
    current = anchor.key if anchor else None
    for seq in sorted(in_db.keys() | on_disk.keys()):
        record = in_db.get(seq) or on_disk[seq]
        if seq in in_db and seq in on_disk and _differs(in_db[seq], on_disk[seq]):
            schedule.problems.append(
                (seq, f"key hand-over after seq {seq}: file and database differ")
            )
            continue
        problem = _handover_problem(record, current)
        if problem:
            schedule.problems.append((seq, f"key hand-over after seq {seq}: {problem}"))
            continue
        current = str(record["new_public_key"])
        schedule.steps.append((seq, current))
        # A hand-over from before the field existed predates every global checkpoint.
        schedule.global_steps.append((int(record.get(HANDOVER_GLOBAL) or 0), current))
    return schedule


def _differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    names = (*HANDOVER_FIELDS, "old_signature", "new_signature")
    return any(str(a[n]) != str(b.get(n)) for n in names) or a.get(HANDOVER_GLOBAL) != b.get(
        HANDOVER_GLOBAL
    )


def _handover_problem(record: dict[str, Any], current: str | None) -> str | None:
    """Why the hand-over cannot be followed from `current` (None: it can)."""
    if current is not None and record["old_public_key"] != current:
        return f"signed over by key {str(record['old_public_key'])[:16]}…, not the key then trusted"
    message = handover_message(record)
    for role in ("old", "new"):
        try:
            public_key_from_hex(str(record[f"{role}_public_key"])).verify(
                bytes.fromhex(str(record[f"{role}_signature"])), message
            )
        except Exception:  # InvalidSignature, ValueError
            return f"bad signature of the {role} key"
    return None


def checkpoint_key_problem(checkpoint: dict[str, Any], schedule: KeySchedule) -> str | None:
    """Why the checkpoint's signature does not count (None: it does).

    With an anchor, the checkpoint must name and be signed by the key the schedule gives for
    its first entry; without one, by the key it names (self-consistency only).
    """
    seq = checkpoint["last_seq"]
    expected = schedule.key_for(int(checkpoint["first_seq"]))
    if expected is not None and checkpoint["public_key"] != expected:
        source = schedule.anchor.source if schedule.anchor else ""
        return (
            f"checkpoint {seq} signed by another key ({str(checkpoint['public_key'])[:16]}…), "
            f"not the trusted key {expected[:16]}… ({source})"
        )
    try:
        public_key_from_hex(expected or str(checkpoint["public_key"])).verify(
            bytes.fromhex(str(checkpoint["signature"])), checkpoint_message(checkpoint)
        )
    except Exception:  # cryptography raises InvalidSignature or ValueError
        return f"checkpoint {seq}: bad signature"
    return None
