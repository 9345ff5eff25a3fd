"""The audit chain's hashing rules: entry text, entry hash, folding and Merkle roots.

One module owns the byte forms, so the writer (`seal`), the verifier (`verify`) and the bench
hash exactly the same bytes. An entry is `<previous entry hash>|<canonical JSON envelope>`, and
its hash is SHA-256 of that UTF-8 text: the link to the previous entry is inside the hashed
bytes, so no field, row or order can change without breaking every later hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GENESIS_HASH = "0" * 64
HASH_HEX_CHARS = 64


@dataclass(frozen=True)
class Event:
    """One fact to log: what happened to which entity, with its canonical JSON payload."""

    event_type: str
    entity_key: str
    content_digest: str
    payload_json: str  # canonical JSON text (see `events.py`), embedded verbatim


def envelope(event: Event, run_id: str, recorded_at: str) -> str:
    """The canonical JSON envelope of an event: fixed key order, no spaces, payload verbatim."""
    return (
        '{"at":' + json.dumps(recorded_at)
        + ',"data":' + event.payload_json
        + ',"digest":' + json.dumps(event.content_digest)
        + ',"key":' + json.dumps(event.entity_key, ensure_ascii=False)
        + ',"run_id":' + json.dumps(run_id)
        + ',"type":' + json.dumps(event.event_type)
        + "}"
    )  # fmt: skip


def entry_hash(entry: str) -> str:
    """SHA-256 (hex) of an entry's UTF-8 text."""
    return hashlib.sha256(entry.encode("utf-8")).hexdigest()


def fold_chain(prev_hash: str, envelopes: Iterable[str]) -> tuple[list[str], list[str]]:
    """Link `envelopes` after `prev_hash`: their entry texts and entry hashes, in order.

    Sequential by nature (each hash feeds the next), but the loop is one C-level SHA-256 per
    entry, about 1.5M entries/s here, far above what a run appends.
    """
    entries: list[str] = []
    hashes: list[str] = []
    sha = hashlib.sha256
    for body in envelopes:
        entry = prev_hash + "|" + body
        prev_hash = sha(entry.encode("utf-8")).hexdigest()
        entries.append(entry)
        hashes.append(prev_hash)
    return entries, hashes


def merkle_root(leaf_hashes: Sequence[str]) -> str:
    """Merkle root (hex) over hex leaf hashes: pairs hashed as raw bytes, an odd node promoted.

    Lets an auditor prove one entry belongs to a signed run with log2(n) hashes, without the
    rest of the log (the regulator bundle ships the path).
    """
    return merkle_root_of_digests([bytes.fromhex(h) for h in leaf_hashes])


def merkle_root_of_digests(leaves: Sequence[bytes]) -> str:
    """`merkle_root` over raw 32-byte digests (the verifier's form, no hex round trip)."""
    if not leaves:
        return GENESIS_HASH
    level = list(leaves)
    sha = hashlib.sha256
    while len(level) > 1:
        paired = [sha(level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()
