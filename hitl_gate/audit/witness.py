"""External witnesses of the signed checkpoints: an append-only file outside the home (and
optionally a git repository and an RFC 3161 time-stamping authority).

Whoever can write the database and the home can delete the log's tail together with its
checkpoints, or rewrite history and re-sign it with the real key. Neither can be caught from
inside the database. So every checkpoint is also appended to a witness file kept where the
pipeline's writer cannot rewrite it (another folder, account, machine or a git remote; a
sibling of the home by default), and `verify` compares: every witnessed checkpoint must be in
the database with the same signed fields and signature. As the checkpoints the database holds
are themselves checked against the entries (head hash and Merkle root), equality proves the
log extends what the witness saw: the entry at the witnessed `last_seq` still hashes to the
witnessed head, which is the hash-chain form of a Certificate Transparency consistency check
(every later entry links back to it). A truncated tail, or a history rewritten and re-signed,
no longer matches the witness.

The file is JSON lines; each line holds one checkpoint, the time it was witnessed and the
SHA-256 of the previous line (`prev`), so a line edited, removed or reordered inside the file
breaks the file's own chain. When the witness folder is a git work tree, each publication is
also committed there (push it to a remote the pipeline cannot rewrite). When a TSA URL is
configured, each checkpoint's signed message is time-stamped and the response stored beside
the file (`<last_seq>.tsr`, named in the checkpoint's line), so even the key holder cannot
back-date a checkpoint; `verify` checks each stamp against its checkpoint (`stamp_problems`,
which also checks the segments' global checkpoints' stamps).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

WITNESS_FILE = "checkpoints.jsonl"
GENESIS_LINE = "0" * 64
SIGNED_FIELDS = (
    "first_seq", "last_seq", "head_hash", "merkle_root", "merkle_fanout", "run_id",
    "created_at", "public_key", "signature",
)  # fmt: skip
TSA_TIMEOUT_S = 10.0
IMPRINT_HASHES = {  # RFC 3161 message imprint algorithms by OID (NIST's SHA-2 arc)
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}


@dataclass(frozen=True)
class WitnessConfig:
    """Where checkpoints are witnessed: `folder` (its `checkpoints.jsonl`), an optional TSA."""

    folder: Path
    tsa_url: str | None = None

    @property
    def file(self) -> Path:
        return self.folder / WITNESS_FILE


@dataclass
class WitnessRead:
    """The witnessed checkpoints by `last_seq`, and what is wrong with the file itself."""

    checkpoints: dict[int, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    exists: bool = False


def witness_record(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The signed fields of a checkpoint as the witness keeps them (plain JSON types)."""
    return {name: checkpoint.get(name) for name in SIGNED_FIELDS}


def line_hash(line: str) -> str:
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


def read_witness(path: Path, key: str = "last_seq", noun: str = "checkpoint") -> WitnessRead:
    """Every line of a witness file, its own chain of `prev` hashes checked; checkpoints by
    their `key` field (`last_seq` here, `global_seq` in the segments' global witness)."""
    read = WitnessRead()
    if not path.exists():
        return read
    read.exists = True
    prev = GENESIS_LINE
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
            checkpoint = record["checkpoint"]
            seq = int(checkpoint[key])
        except (ValueError, KeyError, TypeError) as exc:
            read.problems.append(f"witness {path} line {number}: unreadable ({exc})")
            prev = line_hash(line)
            continue
        if record.get("prev") != prev:
            read.problems.append(
                f"witness {path} line {number} ({noun} {seq}): does not follow the line "
                "before it (the witness file was edited, truncated or reordered)"
            )
        read.checkpoints[seq] = checkpoint
        prev = line_hash(line)
    return read


def chained_lines(records: Sequence[dict[str, Any]], prev: str) -> list[str]:
    """One JSON line per checkpoint record, each naming the SHA-256 of the line before it
    (`prev` for the first), so a witness file is a hash chain of its own: a line removed,
    edited or reordered breaks the next line's `prev`."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lines = []
    for record in records:
        line = json.dumps(
            {"checkpoint": record, "prev": prev, "witnessed_at": now},
            sort_keys=True,
            separators=(",", ":"),
        )
        lines.append(line)
        prev = line_hash(line)
    return lines


def append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append `lines` and fsync before returning: a witnessed checkpoint is on disk before the
    caller reports it published."""
    if not lines:
        return
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())


def publish_checkpoints(
    con: duckdb.DuckDBPyConnection,
    witness: WitnessConfig,
    signed_message: Callable[[dict[str, Any]], bytes],
) -> int:
    """Append every database checkpoint newer than the witness's newest; return how many.

    `signed_message` gives a checkpoint's signed bytes (`seal.checkpoint_message`), which a
    configured TSA time-stamps.

    Called after each seal commits (and by every later seal, so a crash in between only
    delays publication). Never rewrites a line: a database checkpoint that differs from one
    already witnessed is left for `verify` to report.
    """
    witness.folder.mkdir(parents=True, exist_ok=True)
    read = read_witness(witness.file)
    newest = max(read.checkpoints, default=0)
    rows = con.execute(
        "SELECT * FROM audit_checkpoints WHERE last_seq > ? ORDER BY last_seq", [newest]
    ).fetchall()
    if not rows:
        return 0
    names = [d[0] for d in con.description]
    text = witness.file.read_text(encoding="utf-8") if read.exists else ""
    prev = line_hash(text.splitlines()[-1]) if text.strip() else GENESIS_LINE
    records = [witness_record(dict(zip(names, row, strict=True))) for row in rows]
    if witness.tsa_url:
        for record in records:
            target = checkpoint_stamp(witness.folder, record["last_seq"])
            stamp(witness.tsa_url, signed_message(record), target)
            record[STAMP_FIELD] = target.name  # witnessed: its removal is then named
    lines = chained_lines(records, prev)
    append_lines(witness.file, lines)
    _commit_if_git(witness.folder, f"checkpoints up to {rows[-1][names.index('last_seq')]}")
    return len(lines)


def _commit_if_git(folder: Path, message: str) -> None:
    """Commit the witness file when its folder is a git work tree (a no-op otherwise)."""
    if not (folder / ".git").exists():
        return
    git = ["git", "-C", str(folder), "-c", "user.name=hitl-gate", "-c", "user.email=hitl@local"]
    subprocess.run([*git, "add", WITNESS_FILE, *_tsr_files(folder)], check=True)
    subprocess.run([*git, "commit", "-q", "-m", message], check=True)


def _tsr_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.tsr"))


def timestamp_request(message: bytes) -> bytes:
    """DER of an RFC 3161 request for SHA-512 of `message`, with a nonce and the TSA's cert."""
    from rfc3161_client import TimestampRequestBuilder

    builder = TimestampRequestBuilder(data=message, nonce=True, cert_req=True)
    return builder.build().as_bytes()


def checkpoint_stamp(folder: Path, last_seq: int) -> Path:
    """Where the RFC 3161 time-stamp of the single chain's checkpoint `last_seq` is kept."""
    return folder / f"{int(last_seq):012d}.tsr"


def stamp(tsa_url: str, message: bytes, target: Path) -> None:
    """Have the TSA at `tsa_url` time-stamp `message` (RFC 3161 over HTTP); its answer (DER)
    goes to `target`. The single chain's checkpoints and the segments' global ones use it."""
    request = urllib.request.Request(
        tsa_url,
        data=timestamp_request(message),
        headers={"Content-Type": "application/timestamp-query"},
    )
    with urllib.request.urlopen(request, timeout=TSA_TIMEOUT_S) as answer:  # noqa: S310
        target.write_bytes(answer.read())


def load_tsa_roots(path: Path | None) -> list[Any]:
    """The TSA root certificates of a PEM file (`HITL_AUDIT_TSA_ROOTS`); none without one."""
    if path is None:
        return []
    from cryptography import x509

    return list(x509.load_pem_x509_certificates(path.read_bytes()))


def timestamp_problem(token: bytes, message: bytes, roots: Sequence[Any]) -> str | None:
    """Why an RFC 3161 response does not time-stamp `message` (None: it does).

    With `roots` (the TSA's pinned root certificates) the whole token is verified: status,
    the TSA's signature and certificate chain up to a root, and the message imprint. Without,
    only the status and the imprint (the hash the TSA signed is the message's): a note in the
    report says the TSA's signature was not checked."""
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

    try:
        response = decode_timestamp_response(token)
    except Exception as exc:  # a malformed answer: ValueError from the DER decoder
        return f"not an RFC 3161 response ({exc})"
    if response.status not in (0, 1):  # granted, granted with modifications
        return f"the TSA refused it (status {response.status})"
    if roots:
        try:
            VerifierBuilder(roots=list(roots)).build().verify_message(response, message)
        except (VerificationError, ValueError) as exc:
            return f"does not verify against the TSA roots ({exc})"
        return None
    imprint = response.tst_info.message_imprint
    name = IMPRINT_HASHES.get(imprint.hash_algorithm.dotted_string)
    if name is None:
        return f"unknown imprint hash {imprint.hash_algorithm.dotted_string}"
    if hashlib.new(name, message).digest() != imprint.message:
        return "its message imprint is not the hash of the signed checkpoint"
    return None


STAMP_FIELD = "time_stamp"  # a witnessed checkpoint's RFC 3161 stamp file, when one was made


@dataclass(frozen=True)
class TsaCheck:
    """How verify checks the checkpoints' RFC 3161 stamps: against the TSA's pinned root
    certificates (`roots`; none: the imprint only)."""

    roots: tuple[Any, ...] = ()


def stamp_problems(
    stamp_path: Callable[[int], Path],
    signed_message: Callable[[dict[str, Any]], bytes],
    stored: dict[int, dict[str, Any]],
    witnessed: dict[int, dict[str, Any]],
    tsa: TsaCheck,
    noun: str = "checkpoint",
) -> list[tuple[int, str]]:
    """Problems (seq, message) of the stamps of one log (the single chain's checkpoints, or
    the segments' global ones): every stamp at `stamp_path(seq)` must time-stamp the signed
    message of checkpoint `seq` as the database holds it (`stored`), and every stamp the
    witness recorded (`STAMP_FIELD` of its line: published with a TSA configured) must still
    be there. A checkpoint witnessed before a TSA was configured needs none."""
    problems = []
    for seq in sorted(set(stored) | set(witnessed)):
        path = stamp_path(seq)
        if not path.is_file():
            if (witnessed.get(seq) or {}).get(STAMP_FIELD):
                problems.append(
                    (seq, f"{noun} {seq}: its RFC 3161 time-stamp {path.name}, recorded by the "
                     "witness, is missing (deleted)")
                )  # fmt: skip
            continue
        db = stored.get(seq)
        problem = (
            timestamp_problem(path.read_bytes(), signed_message(db), tsa.roots)
            if db is not None
            else "its checkpoint is missing from the database"
        )
        if problem:
            problems.append((seq, f"{noun} {seq}: time-stamp {path.name}: {problem}"))
    return problems


def imprint_only_note(what: str) -> str:
    """The report's note when `what` (stamps) were checked without a pinned TSA root."""
    return (
        f"{what} RFC 3161 stamps checked for their imprint only: no TSA root pinned "
        "(HITL_AUDIT_TSA_ROOTS), so the TSA's signature was not checked"
    )


def compare_with_witness(
    db_checkpoints: dict[int, dict[str, Any]], log_end: int, read: WitnessRead
) -> tuple[list[tuple[int | None, str]], list[str]]:
    """Problems (seq, message) and notes from comparing the database with its witness.

    Every witnessed checkpoint must be in the database, identical; the database's newest
    checkpoint must be the witness's newest or a later one (later ones are notes: they are
    published by the next seal).
    """
    problems: list[tuple[int | None, str]] = [(None, p) for p in read.problems]
    notes: list[str] = []
    for seq in sorted(read.checkpoints):
        seen = read.checkpoints[seq]
        db = db_checkpoints.get(seq)
        if db is None:
            where = "the log ends before it" if log_end < seq else "the database lacks it"
            problems.append(
                (
                    seq,
                    f"witnessed checkpoint {seq} (head {str(seen.get('head_hash'))[:16]}, run "
                    f"{seen.get('run_id')}) is missing: {where}; the tail of the log was "
                    "deleted or its history rewritten",
                )  # fmt: skip
            )
            continue
        differs = [k for k in SIGNED_FIELDS if str(witness_record(db)[k]) != str(seen.get(k))]
        if differs:
            problems.append(
                (
                    seq,
                    f"checkpoint {seq} differs from the one witnessed ({', '.join(differs)}): "
                    "the log up to it was rewritten and re-signed",
                )  # fmt: skip
            )
    newest_witnessed = max(read.checkpoints, default=0)
    newer = [s for s in db_checkpoints if s > newest_witnessed]
    if newer:
        notes.append(
            f"{len(newer)} checkpoints after {newest_witnessed} are not witnessed yet "
            "(published by the next seal)"
        )
    return problems, notes
