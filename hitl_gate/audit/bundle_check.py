"""Check a hitl-gate regulator bundle with Python's standard library and `cryptography` only.

This file imports nothing from hitl-gate on purpose: it is copied into every bundle as
`verify_bundle.py`, so a regulator can run `python verify_bundle.py BUNDLE_DIR` (or read it as
the executable form of the bundle's README) without our code or our database. `hitl audit
verify-bundle` runs this same module.

What it checks, each failure reported with the file (and line) it concerns:
- the manifest: its Ed25519 signature, the SHA-256 of every file it lists, no unlisted file,
  and `SHA256SUMS` agreeing with it;
- each shipped log range: every entry's hash, every link (an entry starts with the hash of the
  one before it, the first with the range's stated predecessor), the Merkle root and head hash
  of its signed checkpoint, the checkpoint's Ed25519 signature;
- each exported lineage row: SHA-256 of its canonical JSON line equals the `digest` of the log
  entry it names, whose `type` and `key` also match (only these three envelope members are read);
- key hand-overs (`handovers/key-handover-*.json`): followed from the pinned key as `hitl audit
  verify` does, each signed by the key then trusted and by the new key, so every checkpoint must
  be signed by the one key valid for its first entry, and the manifest by the newest key.

The hashing rules (entry hash, Merkle tree, signed checkpoint bytes) restate
`hitl_gate.audit.chain` and `seal`; a test keeps them equal.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLE_FORMAT = "hitl-audit-bundle/2"  # /2: per-run segments and global checkpoints
READABLE_FORMATS = ("hitl-audit-bundle/1", BUNDLE_FORMAT)
GENESIS_HASH = "0" * 64
MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = "manifest.sig"
SUMS = "SHA256SUMS"
KEYS = "public_keys.txt"
LINEAGE_INDEX = "lineage/index.csv"
HANDOVERS = "handovers"
HANDOVER_PURPOSE = "hitl-gate checkpoint key hand-over"
HANDOVER_FIELDS = ("after_seq", "old_public_key", "new_public_key", "created_at")
# The last global checkpoint (per-run segments) signed by the old key; signed when present.
HANDOVER_GLOBAL = "after_global_seq"
CHECKPOINT_FIELDS = (
    "first_seq", "last_seq", "head_hash", "merkle_root", "run_id", "created_at", "public_key",
)  # fmt: skip
# Per-run segments (hitl_gate.audit.run_segments): a leaf is a folded segment checkpoint, a
# global checkpoint signs the Merkle root (fan-out 16) of every leaf so far.
LEAVES_FILE = "global/leaves.json"
GLOBALS_FILE = "global/checkpoints.json"
LEAF_FIELDS = ("segment_id", "last_seq", "head_hash", "merkle_root", "signature")
GLOBAL_FIELDS = ("global_seq", "leaves", "tree_root", "previous_hash", "created_at", "public_key")
GLOBAL_FANOUT = 16
_MALFORMED = (ValueError, KeyError, TypeError, IndexError, AttributeError, UnicodeDecodeError)


@dataclass
class BundleReport:
    """Problems found (empty when the bundle checks out) and how much was checked."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    entries: int = 0
    checkpoints: int = 0
    rows: int = 0
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = (
            f"bundle: {self.files} files, {self.entries} log entries, {self.checkpoints} "
            f"signed checkpoints, {self.rows} lineage rows: "
            + ("OK" if self.ok else f"BROKEN ({len(self.problems)} problems)")
        )
        lines = [head] + [f"  problem: {p}" for p in self.problems[:30]]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def merkle_fanout(checkpoint: dict[str, Any]) -> int:
    """Children per Merkle node a checkpoint was signed with; 2 when it has no such field."""
    fanout = checkpoint.get("merkle_fanout")
    return 2 if fanout is None else int(fanout)


def merkle_root(leaves: list[bytes], fanout: int = 2) -> str:
    """Root over raw 32-byte leaves: each level hashes groups of `fanout` consecutive nodes
    (their concatenated bytes); a last group of several nodes is hashed the same way, a last
    single node is promoted unchanged; no leaves gives 64 zeros."""
    if not leaves:
        return GENESIS_HASH
    level = leaves
    while len(level) > 1:
        groups = [level[i : i + fanout] for i in range(0, len(level), fanout)]
        level = [g[0] if len(g) == 1 else hashlib.sha256(b"".join(g)).digest() for g in groups]
    return level[0].hex()


def checkpoint_message(checkpoint: dict[str, Any]) -> bytes:
    """The signed bytes: JSON of the checkpoint fields, sorted keys, no spaces, UTF-8
    (`merkle_fanout` among them when it is not 2)."""
    body = {name: checkpoint[name] for name in CHECKPOINT_FIELDS}
    if merkle_fanout(checkpoint) != 2:
        body["merkle_fanout"] = merkle_fanout(checkpoint)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def leaf_hash(leaf: dict[str, Any]) -> bytes:
    """SHA-256 of a leaf's `LEAF_FIELDS` as JSON (sorted keys, no spaces, UTF-8)."""
    body = {name: leaf[name] for name in LEAF_FIELDS}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()


def global_message(checkpoint: dict[str, Any]) -> bytes:
    """The signed bytes of a global checkpoint: its `GLOBAL_FIELDS` as JSON, sorted keys."""
    body = {name: checkpoint[name] for name in GLOBAL_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def global_hash(checkpoint: dict[str, Any] | None) -> str:
    """What the next global checkpoint's `previous_hash` holds: SHA-256 (hex) of the signed
    bytes followed by the signature's hex text; 64 zeros before the first."""
    if checkpoint is None:
        return GENESIS_HASH
    return sha256_hex(global_message(checkpoint) + str(checkpoint["signature"]).encode())


def handover_message(record: dict[str, Any]) -> bytes:
    """The bytes both keys of a hand-over sign: JSON of its fields and the purpose, sorted
    keys, no spaces, UTF-8 (`after_seq` as a number; `after_global_seq` too, as a number,
    when the record has one: hand-overs made before it existed sign without it)."""
    body = {name: record[name] for name in HANDOVER_FIELDS}
    body["after_seq"] = int(body["after_seq"])
    if record.get(HANDOVER_GLOBAL) is not None:
        body[HANDOVER_GLOBAL] = int(record[HANDOVER_GLOBAL])
    body["purpose"] = HANDOVER_PURPOSE
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass
class KeyChain:
    """The key valid from each sequence number on: the pinned key, then its hand-overs."""

    first: str | None  # the pinned key (None: no pin, each checkpoint's own key is checked)
    steps: list[tuple[int, str]] = field(default_factory=list)  # (after_seq, key from then)
    # (after_global_seq, key from then): the same hand-overs on the global checkpoints
    global_steps: list[tuple[int, str]] = field(default_factory=list)

    def key_for(self, first_seq: int) -> str | None:
        key = self.first
        for after_seq, new in self.steps:
            if first_seq > after_seq:
                key = new
        return key

    def key_for_global(self, global_seq: int) -> str | None:
        key = self.first
        for after_global_seq, new in self.global_steps:
            if global_seq > after_global_seq:
                key = new
        return key

    @property
    def newest(self) -> str | None:
        return self.steps[-1][1] if self.steps else self.first


def ed25519_valid(public_key_hex: str, signature_hex: str, message: bytes) -> bool:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except Exception:  # InvalidSignature, or a malformed key or signature
        return False
    return True


def check_bundle(folder: Path, public_key: str | None = None) -> BundleReport:
    """Check everything in `folder`; `public_key` (hex), when given, is the pinned key: it and
    the keys it handed over to must have signed it all, each where the hand-overs say."""
    report = BundleReport()
    chain = _follow_handovers(folder, public_key, report)
    manifest = _check_manifest(folder, chain, report)
    if manifest is None:
        return report
    keys = _read_keys(folder, report)
    leaves = _check_global(folder, manifest, keys, chain, report)
    entries = _check_ranges(folder, manifest, keys, chain, leaves, report)
    _check_lineage(folder, manifest, entries, report)
    if public_key is None:
        report.notes.append(
            f"signatures checked against the bundle's own key(s) {sorted(keys)}: compare them "
            "with the operator's published key, or pass --public-key"
        )
    return report


def _follow_handovers(folder: Path, public_key: str | None, report: BundleReport) -> KeyChain:
    """The hand-overs shipped in the bundle, followed from `public_key` in `after_seq` order.

    Each must be signed by the key trusted until then (the pinned key, or the previous
    hand-over's new key) and by its new key; one that is not is reported and not followed, so
    the checkpoints after it fail their key check. Without a pin only the two signatures of
    each are checked, and the chain starts from the first hand-over's old key.
    """
    records: list[tuple[int, str, dict[str, Any]]] = []
    for path in sorted((folder / HANDOVERS).glob("key-handover-*.json")):
        name = path.relative_to(folder).as_posix()
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            records.append((int(record["after_seq"]), name, record))
        except (OSError, *_MALFORMED) as exc:
            report.problems.append(f"{name}: unreadable key hand-over ({exc})")
    records.sort(key=lambda item: item[0])
    chain = KeyChain(public_key or (str(records[0][2].get("old_public_key")) if records else None))
    for after_seq, name, record in records:
        current = chain.newest
        try:
            message = handover_message(record)
            old, new = str(record["old_public_key"]), str(record["new_public_key"])
            signed = all(
                ed25519_valid(str(record[f"{role}_public_key"]), str(record[f"{role}_signature"]),
                              message)
                for role in ("old", "new")
            )  # fmt: skip
        except _MALFORMED as exc:
            report.problems.append(f"{name}: unreadable key hand-over ({exc})")
            continue
        if old != current:
            report.problems.append(
                f"{name}: hand-over signed over by key {old}, not the key then trusted {current}"
            )
        elif not signed:
            report.problems.append(f"{name}: bad signature of the old or the new key")
        else:
            chain.steps.append((after_seq, new))
            # a hand-over from before `after_global_seq` existed predates every global one
            chain.global_steps.append((int(record.get(HANDOVER_GLOBAL) or 0), new))
    return chain


def _check_manifest(folder: Path, chain: KeyChain, report: BundleReport) -> dict[str, Any] | None:
    """The signed manifest, with every file's hash checked; None when it cannot be trusted."""
    try:
        raw = (folder / MANIFEST).read_bytes()
        manifest = json.loads(raw)
        signature = (folder / MANIFEST_SIGNATURE).read_text(encoding="ascii").strip()
        signer = str(manifest["signing_key"])
        listed: dict[str, str] = dict(manifest["files"])
        if manifest.get("format") not in READABLE_FORMATS:
            report.problems.append(f"{MANIFEST}: unknown format {manifest.get('format')!r}")
            return None
    except (OSError, *_MALFORMED) as exc:
        report.problems.append(f"{MANIFEST}: unreadable ({exc})")
        return None
    keys = _read_keys(folder, report)
    if signer not in keys:
        report.problems.append(f"{MANIFEST}: signing key {signer} is not in {KEYS}")
    if chain.newest is not None and signer != chain.newest:
        report.problems.append(f"{MANIFEST}: signed by {signer}, not the expected key "
                               f"{chain.newest} (the pinned key after its hand-overs)")  # fmt: skip
    if not ed25519_valid(signer, signature, raw):
        report.problems.append(f"{MANIFEST_SIGNATURE}: bad signature over {MANIFEST}")
    present = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name not in (MANIFEST, MANIFEST_SIGNATURE)
    }
    for name in sorted(present - listed.keys()):
        report.problems.append(f"{name}: not listed in the manifest")
    for name, digest in sorted(listed.items()):
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            report.problems.append(f"{name}: listed outside the bundle")
        elif not path.is_file():
            report.problems.append(f"{name}: listed in the manifest but missing")
        elif sha256_hex(path.read_bytes()) != digest:
            report.problems.append(f"{name}: SHA-256 differs from the manifest")
    report.files = len(present)
    _check_sums(folder, listed, report)
    return manifest


def _check_sums(folder: Path, listed: dict[str, str], report: BundleReport) -> None:
    """`SHA256SUMS` (for `sha256sum -c`) must state the manifest's hashes."""
    try:
        lines = (folder / SUMS).read_text(encoding="utf-8").splitlines()
        sums = {line[66:]: line[:64] for line in lines if line}
    except (OSError, *_MALFORMED) as exc:
        report.problems.append(f"{SUMS}: unreadable ({exc})")
        return
    expected = {k: v for k, v in listed.items() if k != SUMS}
    if sums != expected:
        report.problems.append(f"{SUMS}: does not match the manifest")


def _read_keys(folder: Path, report: BundleReport) -> set[str]:
    try:
        text = (folder / KEYS).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        report.problems.append(f"{KEYS}: unreadable ({exc})")
        return set()
    return {line.strip() for line in text.splitlines() if line.strip()}


Envelopes = dict[tuple[str, int], tuple[str, str, str]]  # (chain, seq) -> (type, key, digest)
Leaves = dict[tuple[str, int], tuple[dict[str, Any], str | None]]  # (segment, last_seq) -> ...


def _check_global(
    folder: Path,
    manifest: dict[str, Any],
    keys: set[str],
    chain: KeyChain,
    report: BundleReport,
) -> Leaves:
    """The global leaves and checkpoints (per-run segments), when shipped: every leaf's hash,
    every global checkpoint's link, Merkle root over the leaves and signature by the key the
    hand-overs give for it. Returns each leaf under a global checkpoint with that key."""
    listed = manifest.get("files", {})
    if GLOBALS_FILE not in listed and LEAVES_FILE not in listed:
        return {}
    try:
        leaves = json.loads((folder / LEAVES_FILE).read_text(encoding="utf-8"))
        globals_ = json.loads((folder / GLOBALS_FILE).read_text(encoding="utf-8"))
        hashes = [leaf_hash(leaf) for leaf in leaves]
    except (OSError, *_MALFORMED) as exc:
        report.problems.append(f"{LEAVES_FILE} / {GLOBALS_FILE}: unreadable ({exc})")
        return {}
    for number, (leaf, digest) in enumerate(zip(leaves, hashes, strict=True), start=1):
        if leaf.get("leaf_seq") != number or leaf.get("leaf_hash") != digest.hex():
            where = f"{LEAVES_FILE} leaf {leaf.get('leaf_seq')}"
            report.problems.append(f"{where} (segment {leaf.get('segment_id')}): edited or out "
                                   "of order")  # fmt: skip
    found: Leaves = {}
    previous: dict[str, Any] | None = None
    for number, cp in enumerate(globals_, start=1):
        where = f"{GLOBALS_FILE} global checkpoint {cp.get('global_seq')}"
        try:
            signer, count = str(cp["public_key"]), int(cp["leaves"])
            expected = chain.key_for_global(int(cp["global_seq"]))
            if signer not in keys or (expected and signer != expected):
                report.problems.append(f"{where}: signed by an unexpected key {signer}"
                                       + (f", not {expected}" if expected else ""))  # fmt: skip
            if not ed25519_valid(signer, str(cp["signature"]), global_message(cp)):
                report.problems.append(f"{where}: bad signature (key {signer})")
            if cp["global_seq"] != number or cp["previous_hash"] != global_hash(previous):
                report.problems.append(f"{where}: does not link to the global checkpoint before")
            if count > len(leaves) or merkle_root(hashes[:count], GLOBAL_FANOUT) != cp["tree_root"]:
                report.problems.append(f"{where}: tree root differs from leaves 1..{count} of "
                                       f"{LEAVES_FILE}")  # fmt: skip
        except _MALFORMED as exc:
            report.problems.append(f"{where}: unreadable ({exc})")
            continue
        for leaf in leaves[(int(previous["leaves"]) if previous else 0) : count]:
            found[(str(leaf["segment_id"]), int(leaf["last_seq"]))] = (leaf, expected or signer)
        previous = cp
    report.notes.append(f"{len(leaves)} segment leaves under {len(globals_)} global checkpoints")
    return found


def _check_ranges(
    folder: Path,
    manifest: dict[str, Any],
    keys: set[str],
    chain: KeyChain,
    leaves: Leaves,
    report: BundleReport,
) -> Envelopes:
    """Every shipped range against its signed checkpoint; (type, key, digest) by chain and
    seq. A segment's range (`segment_id`) must end at a leaf under a global checkpoint and be
    signed by that global checkpoint's key; a single-chain range by the key the hand-overs
    give for its first entry."""
    envelopes: Envelopes = {}
    heads: dict[tuple[str, int], str] = {}  # (chain, last seq of a range) -> its head hash
    for spec in manifest.get("ranges", []):
        try:
            cp = json.loads((folder / spec["checkpoint_file"]).read_text(encoding="utf-8"))
            first, last = int(spec["first_seq"]), int(spec["last_seq"])
            segment = str(spec.get("segment_id") or "")
            name = str(spec["entries_file"])
            data = (folder / name).read_bytes()
            head, leaves_of_range = _check_entries(
                name, data, first, str(spec["prev_hash"]), segment, envelopes, report
            )
        except (OSError, *_MALFORMED) as exc:
            report.problems.append(f"range {spec}: unreadable ({exc})")
            continue
        report.checkpoints += 1
        where = spec["checkpoint_file"]
        if (cp.get("first_seq"), cp.get("last_seq")) != (first, last):
            report.problems.append(f"{where}: covers {cp.get('first_seq')}..{cp.get('last_seq')}, "
                                   f"the range {first}..{last}")  # fmt: skip
        if len(leaves_of_range) != last - first + 1:
            report.problems.append(
                f"{name}: {len(leaves_of_range)} entries, expected {last - first + 1}"
            )
        if head != cp.get("head_hash"):
            report.problems.append(f"{where}: head hash differs from the entries of {name}")
        if merkle_root(leaves_of_range, merkle_fanout(cp)) != cp.get("merkle_root"):
            report.problems.append(f"{where}: Merkle root differs from the entries of {name}")
        signer = str(cp.get("public_key"))
        expected = chain.key_for(first)
        if segment:
            leaf, expected = leaves.get((segment, last), (None, None))
            if leaf is None or any(cp.get(k) != leaf.get(k) for k in LEAF_FIELDS[1:]):
                report.problems.append(f"{where}: segment {segment} checkpoint {last} is not a "
                                       "leaf under a global checkpoint")  # fmt: skip
        if signer not in keys or (expected and signer != expected):
            report.problems.append(f"{where}: signed by an unexpected key {signer}"
                                   + (f", not {expected}" if expected else ""))  # fmt: skip
        try:
            signed = ed25519_valid(signer, str(cp["signature"]), checkpoint_message(cp))
        except _MALFORMED:
            signed = False
        if not signed:
            report.problems.append(f"{where}: bad signature")
        previous = heads.get((segment, first - 1))
        if previous is not None and previous != spec["prev_hash"]:
            report.problems.append(f"{name}: does not link to the range before it")
        heads[(segment, last)] = head
    return envelopes


def _check_entries(
    name: str,
    data: bytes,
    first: int,
    prev_hash: str,
    segment: str,
    envelopes: Envelopes,
    report: BundleReport,
) -> tuple[str, list[bytes]]:
    """Recompute one range file (`seq<TAB>entry_hash<TAB>entry` lines) of the single chain
    (`segment` empty) or a segment; its head and leaves."""
    leaves: list[bytes] = []
    link = prev_hash
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        fields = line.split(b"\t", 2)
        if len(fields) != 3:
            report.problems.append(f"{name} line {number}: not seq, hash and entry")
            continue
        seq, stored, entry = int(fields[0]), fields[1].decode("ascii"), fields[2]
        if seq != first + number - 1:
            report.problems.append(
                f"{name} line {number}: seq {seq}, expected {first + number - 1}"
            )
        raw = hashlib.sha256(entry).digest()
        if raw.hex() != stored:
            report.problems.append(f"{name} seq {seq}: entry hash differs (entry altered)")
        if entry[:65] != (link + "|").encode("ascii"):
            report.problems.append(f"{name} seq {seq}: does not link to the entry before it")
        try:
            body = json.loads(entry[65:])
            envelopes[(segment, seq)] = (str(body["type"]), str(body["key"]), str(body["digest"]))
        except _MALFORMED:
            report.problems.append(f"{name} seq {seq}: envelope is not the expected JSON")
        leaves.append(raw)
        link = raw.hex()
        report.entries += 1
    return link, leaves


def _check_lineage(
    folder: Path, manifest: dict[str, Any], envelopes: Envelopes, report: BundleReport
) -> None:
    """Each exported row: its line's SHA-256 is the digest of the log entry it names (in the
    single chain, or in the segment its `segment` column names). Findings name the table
    (`tables` in the manifest), the row's key and the entry."""
    tables = manifest.get("tables") or {}
    try:
        text = (folder / LINEAGE_INDEX).read_text(encoding="utf-8")
        index = list(csv.DictReader(io.StringIO(text)))
    except (OSError, csv.Error, *_MALFORMED) as exc:
        report.problems.append(f"{LINEAGE_INDEX}: unreadable ({exc})")
        return
    lines: dict[str, list[bytes]] = {}
    used: dict[str, set[int]] = {}
    for number, row in enumerate(index, start=2):
        try:
            kind, line, seq = row["event_type"], int(row["line"]), int(row["seq"])
            segment = row.get("segment") or ""
            if kind not in lines:
                name = f"lineage/{kind}.jsonl"
                if "/" in kind or kind.startswith("."):
                    raise ValueError(f"bad event type {kind!r}")
                lines[kind] = (folder / name).read_bytes().split(b"\n")[:-1]
                used[kind] = set()
            text_bytes = lines[kind][line - 1]
        except (OSError, *_MALFORMED) as exc:
            report.problems.append(f"{LINEAGE_INDEX} line {number}: unusable ({exc})")
            continue
        used[kind].add(line)
        digest = sha256_hex(text_bytes)
        where = f"{tables.get(kind, kind)} {row['entity_key']} (lineage/{kind}.jsonl line {line})"
        entry = f"segment {segment} entry seq {seq}" if segment else f"log entry {seq}"
        if digest != row["content_digest"]:
            report.problems.append(f"{where}: SHA-256 differs from the index (row altered)")
        logged = envelopes.get((segment, seq))
        if logged is None:
            report.problems.append(f"{where}: {entry} is not in a shipped log range")
        elif logged != (kind, row["entity_key"], digest):
            report.problems.append(f"{where}: differs from {entry} (type, key or digest)")
        report.rows += 1
    for kind, rows in lines.items():
        if len(used[kind]) != len(rows):
            report.problems.append(f"lineage/{kind}.jsonl: {len(rows) - len(used[kind])} lines "
                                   "not in the index")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python verify_bundle.py DIR [--public-key HEX]`: exit 0 when the bundle checks out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--public-key", help="the operator's published Ed25519 key (hex)")
    args = parser.parse_args(argv)
    report = check_bundle(Path(args.bundle), args.public_key)
    sys.stdout.write(report.summary() + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
