"""An intake killed between its commit and its seal is recovered by the next intake, safely.

Intake commits a file's verdict and opinion rows, then seals exactly those (`sealing`). Killed
in between, the rows stay unsealed and every seal refuses them as it refuses forged rows. They
need not stay refused: a genuine intake's rows are exactly what its archived, signed file
yields, and that can be checked again without trusting the rows. Each intake (the
`reviewer_verdicts` stage, the portal) calls `recover_interrupted` on its writing connection
before it takes anything new in, so there is one writer, and the tables hold what the
interrupted intake left:

1. the domain's unsealed verdict and opinion rows (content not in the log) name the files
   they claim to come from (`file_sha256`); a row naming no recorded file stays refused;
2. each file's bytes are read from the archive and must hash to their name; the signature
   (the reviewer's over the file, or the portal's attestation naming the person, the file's
   hash and the time) must verify against the people registry both at the time the file was
   received and now (a key revoked since recovers nothing);
3. in one transaction that is always rolled back, the review tables are put back as they
   were when the earliest interrupted file was received (`_REWIND`: what was written or
   changed at or after that moment is removed or reopened), and the files are taken in again
   in their order by the same code (`take_in_signed`: same clock, run id, registry, limits);
4. a file whose rows equal the rows so derived (every table, key and digest, as the seal
   computes them) is recovered: a recovery event is recorded (`intake_recoveries`: the file
   and its digest, its signer, when it was received, which run recovered it, when and as whom,
   the keys) and the intake seal logs the file's rows with the event. Anything else (an
   edited row, a row added under the file's digest, a file altered or missing, a signature
   that no longer verifies, a replay that decides otherwise) stays refused, named by table,
   key and digest in the report, and every seal keeps refusing it.

Running it again changes nothing: a recovered file's rows are sealed, so it is no longer
found; killed after the event and before the seal, the next run checks the file again and the
event is not recorded twice.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.audit.events import SOURCES_BY_TYPE, source_sql
from hitl_gate.core.database import insert_new_rows, transaction
from hitl_gate.core.domain import DomainConfig
from hitl_gate.identity.acts import IdentityError, verify_act
from hitl_gate.identity.registry import Registry, Signer
from hitl_gate.identity.signatures import PORTAL, VERDICTS
from hitl_gate.identity.store import load_registry
from hitl_gate.review.assignments import PORTAL_SIGNER
from hitl_gate.review.intake.limits import IntakeLimits
from hitl_gate.review.intake.received import VERDICT_SUFFIXES
from hitl_gate.review.intake.sealing import INTAKE_OWNED, IntakeSealer, seal_written
from hitl_gate.review.intake.signed import PORTAL_VERDICT_ACT, SignedReturn, signature_digest
from hitl_gate.review.intake.verdict_files import IntakeContext, SignedBytes, take_in_signed
from hitl_gate.review.settings import review_settings

RECOVERY_TABLE = "intake_recoveries"

# The domain's review tables as they were at `$since`: every read of `take_in_signed` that a
# later write could change. Every row naming a replayed file goes too, whatever time it
# claims, so the rows read back after the replay are the replay's own. Run only inside the
# replay's transaction, which is rolled back.
_FILES = "file_sha256 IN (SELECT unnest($files::VARCHAR[]))"
_REWIND = (
    f"DELETE FROM verdicts WHERE received_at >= $since AND domain = $domain OR {_FILES}",
    f"DELETE FROM verdict_opinions WHERE received_at >= $since AND domain = $domain OR {_FILES}",
    f"DELETE FROM verdict_rejections WHERE {_FILES}",
    f"DELETE FROM conflict_resolutions WHERE resolved_at >= $since AND domain = $domain "
    f"OR {_FILES}",
    "DELETE FROM review_escalations WHERE raised_at >= $since AND domain = $domain",
    "UPDATE review_escalations SET resolved_at = NULL WHERE resolved_at >= $since "
    "AND domain = $domain",
    "DELETE FROM review_batch_closures WHERE closed_at >= $since AND domain = $domain",
    "DELETE FROM escalation_batch_cases WHERE exported_at >= $since AND domain = $domain",
    "DELETE FROM review_assignments WHERE recorded_at >= $since AND domain = $domain",
    "DELETE FROM executions WHERE executed_at >= $since AND domain = $domain",
)

Row = tuple[str, str, str]  # (table, entity key, content digest)


@dataclass(frozen=True)
class Recovery:
    """What one recovery found: files recovered, and why the rest stays refused."""

    recovered: tuple[str, ...] = ()  # one sentence per recovered file
    refused: tuple[str, ...] = ()  # one sentence per refused file or row
    seal_refusal: str | None = None  # rows the recovery's seal still refused (forged ones)

    def lines(self) -> list[str]:
        return [*self.recovered, *self.refused]


@dataclass(frozen=True)
class _Interrupted:
    """A recorded file whose rows are (partly) unsealed, as `verdict_files` records it."""

    sha: str
    name: str
    archived_path: str
    received_at: datetime
    run_id: str
    signature: str | None
    attestation: tuple[str, str] | None  # the portal's (payload, signature), if it came so


def recover_interrupted(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    seal: IntakeSealer,
    *,
    batches_dir: Path,
    archive_dir: Path,
    key: bytes,
    limits: IntakeLimits,
    run_id: str,
    now: datetime,
) -> Recovery:
    """Recover the domain's interrupted intakes (see the module docstring); idempotent.

    Call on the intake's writing connection before it takes anything new in, with the
    batches, archive, review key and limits intake uses; `run_id` and `now` name the
    recovering intake in the recovery event.
    """
    unsealed = _unsealed_rows(con, domain.name)
    if not unsealed:
        return Recovery()
    claimed = {sha for sha, _ in unsealed}
    files = _recorded_files(con, sorted(claimed))
    refused = [
        f"{table} {key}: names file {sha[:16]}, which no intake recorded (row digest "
        f"{digest[:16]}): not recovered"
        for sha, (table, key, digest) in sorted(unsealed)
        if sha not in files
    ]
    registry = load_registry(con)
    evidence: dict[str, SignedBytes] = {}
    for sha, file in files.items():
        checked = _evidence(registry, file, archive_dir, now)
        if isinstance(checked, str):
            refused.append(f"{file.name} ({sha[:16]}): {checked}; its rows are not recovered")
        else:
            evidence[sha] = checked
    present = _file_rows(con, list(files))
    intake = IntakeContext(
        domain=domain, batches_dir=batches_dir, key=key, run_id=run_id,
        settings=review_settings(domain), now=now, registry=registry, limits=limits, replay=True,
    )  # fmt: skip
    derived, failures = _replay(con, intake, files, evidence)
    recovered: dict[str, list[Row]] = {}
    for sha in evidence:
        if sha in failures:
            refused.append(f"{files[sha].name} ({sha[:16]}): taken in again, {failures[sha]}")
        elif present.get(sha, set()) != derived.get(sha, set()):
            refused.append(_mismatch(files[sha].name, present.get(sha, set()), derived.get(sha)))
        else:
            recovered[sha] = sorted(present[sha])
    if not recovered:
        return Recovery(refused=tuple(refused))
    _record_events(con, domain.name, files, evidence, recovered, run_id, now)
    written = {
        event_type: [key for rows in recovered.values() for t, key, _ in rows if t == table]
        for table, event_type in INTAKE_OWNED.items()
    }
    refusal = seal_written(con, seal, written)
    lines = tuple(
        f"{files[sha].name} ({sha[:16]}): interrupted intake of run {files[sha].run_id} "
        f"recovered: {len(rows)} row(s) re-derived from the signed file and sealed"
        for sha, rows in recovered.items()
    )
    return Recovery(lines, tuple(refused), refusal)


def _unsealed_rows(con: duckdb.DuckDBPyConnection, domain: str) -> set[tuple[str, Row]]:
    """(file_sha256, (table, key, digest)) of the domain's verdict and opinion rows the log
    does not hold. The seal's cheap fingerprint finds the candidates; the log index decides
    (a forged index row can only hide a row from recovery, never get one sealed)."""
    found: set[tuple[str, Row]] = set()
    for table, event_type in INTAKE_OWNED.items():
        sql = source_sql(con, SOURCES_BY_TYPE[event_type], sha256="sha256")
        if sql is None:
            continue
        rows = con.execute(
            f"""
            SELECT r.file_sha256, r.entity_key, r.content_digest FROM (
                SELECT file_sha256, {sql.entity_key} AS entity_key,
                       {sql.content_digest} AS content_digest
                FROM {sql.table} WHERE domain = $domain AND {sql.fingerprint} NOT IN
                    (SELECT fingerprint FROM audit_seen_rows WHERE event_type = $type)
            ) r ANTI JOIN audit_log_index i ON i.event_type = $type
                AND i.entity_key = r.entity_key AND i.content_digest = r.content_digest
            """,
            {"domain": domain, "type": event_type},
        ).fetchall()
        found |= {(str(sha), (table, str(key), str(digest))) for sha, key, digest in rows}
    return found


def _file_rows(con: duckdb.DuckDBPyConnection, shas: list[str]) -> dict[str, set[Row]]:
    """Every verdict and opinion row naming one of `shas`, by file: (table, key, digest)."""
    rows: dict[str, set[Row]] = {}
    for table, event_type in INTAKE_OWNED.items():
        sql = source_sql(con, SOURCES_BY_TYPE[event_type], sha256="sha256")
        if sql is None:
            continue
        for sha, key, digest in con.execute(
            f"SELECT file_sha256, {sql.entity_key}, {sql.content_digest} FROM {sql.table} "
            "WHERE file_sha256 IN (SELECT unnest(?::VARCHAR[]))",
            [shas],
        ).fetchall():
            rows.setdefault(str(sha), set()).add((table, str(key), str(digest)))
    return rows


def _recorded_files(con: duckdb.DuckDBPyConnection, shas: list[str]) -> dict[str, _Interrupted]:
    """The `verdict_files` rows of `shas`, in the order they were taken in."""
    rows = con.execute(
        "SELECT f.file_sha256, f.file_name, f.archived_path, f.received_at, f.run_id, "
        "f.signature, p.payload, p.signature FROM verdict_files f LEFT JOIN portal_verdicts p "
        "ON p.file_sha256 = f.file_sha256 WHERE f.file_sha256 IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY f.received_at, f.rowid",
        [shas],
    ).fetchall()
    return {
        str(sha): _Interrupted(
            str(sha),
            str(name),
            str(archived),
            received,
            str(run),
            signature,
            None if payload is None else (str(payload), str(attested)),
        )  # fmt: skip
        for sha, name, archived, received, run, signature, payload, attested in rows
    }


def _evidence(
    registry: Registry, file: _Interrupted, archive_dir: Path, now: datetime
) -> SignedBytes | str:
    """The file's archived bytes with their verified signer, or why they cannot be trusted."""
    archived = Path(file.archived_path)
    if (
        archived.parent.resolve() != archive_dir.resolve()
        or archived.stem != file.sha
        or archived.suffix not in VERDICT_SUFFIXES
    ):
        return f"recorded as archived at {archived}, not where intake archives it"
    try:
        data = archived.read_bytes()
    except OSError as error:
        return f"its archived file cannot be read ({error})"
    if hashlib.sha256(data).hexdigest() != file.sha:
        return f"its archived file {archived.name} was altered or replaced (its SHA-256 differs)"
    try:
        if file.attestation is None:
            signature = file.signature
            signer = _signer(registry, data, signature, VERDICTS, (), file, now)
        else:
            payload, signature = file.attestation
            signer = _attested(registry, payload, signature, file, now)
    except IdentityError as error:
        return str(error)
    except (ValueError, KeyError, TypeError) as error:  # a verified payload of another shape
        return f"the portal's attestation cannot be read ({error})"
    signed = SignedReturn(signer, signature or "", signature_digest(signature))
    return SignedBytes(data=data, name=file.name, sha=file.sha, archived=archived, signed=signed)


def _signer(
    registry: Registry,
    data: bytes,
    signature: str | None,
    namespace: str,
    roles: tuple[str, ...],
    file: _Interrupted,
    now: datetime,
) -> Signer:
    """The signer of `data`, verified at the file's reception and again now (same key)."""
    what = f"{file.name}: signature"
    domain = "*" if roles else None
    then = verify_act(registry, data, signature, namespace, at=file.received_at, domain=domain,
                      roles=roles, what=f"{what} when received")  # fmt: skip
    still = verify_act(registry, data, signature, namespace, at=now, domain=domain, roles=roles,
                       what=f"{what} now")  # fmt: skip
    if still != then:
        raise IdentityError(f"{what}: verifies as {then} when received but as {still} now")
    return then


def _attested(
    registry: Registry, payload: str, signature: str, file: _Interrupted, now: datetime
) -> Signer:
    """The person the portal's attestation names, once the portal's signature verifies and the
    attestation is for this act, this file and the moment it was received."""
    _signer(registry, payload.encode("utf-8"), signature, PORTAL, (PORTAL_SIGNER,), file, now)
    fields = json.loads(payload)
    if (
        fields.get("act") != PORTAL_VERDICT_ACT
        or fields.get("file_sha256") != file.sha
        or datetime.fromisoformat(str(fields.get("at"))) != file.received_at
    ):
        raise IdentityError(
            f"{file.name}: the portal's attestation is not for this file at the time it was "
            "received"
        )
    return Signer(str(fields["person_id"]), str(fields["person_fingerprint"]))


def _replay(
    con: duckdb.DuckDBPyConnection,
    intake: IntakeContext,
    files: dict[str, _Interrupted],
    evidence: dict[str, SignedBytes],
) -> tuple[dict[str, set[Row]], dict[str, str]]:
    """The rows each trusted file yields when taken in again as it was (then rolled back),
    and why a file could not be taken in again (whatever the failure: it is then refused,
    and the intake that called goes on)."""
    if not evidence:
        return {}, {}
    since = min(files[sha].received_at for sha in evidence)
    failures: dict[str, str] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        params = {"since": since, "files": sorted(evidence), "domain": intake.domain.name}
        for statement in _REWIND:
            con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})
        for sha, returned in evidence.items():  # in the order they were taken in
            file = files[sha]  # taken in as then: its run, its clock
            context = replace(intake, run_id=file.run_id, now=file.received_at)
            try:
                take_in_signed(con, returned, context)
            except IdentityError as error:
                failures[sha] = f"refused: {error}"
        derived = _file_rows(con, list(evidence))
    except Exception as error:  # noqa: BLE001 - a replay that fails recovers nothing
        derived = {}
        failures = {sha: f"failed: {error}" for sha in evidence}
    finally:
        con.execute("ROLLBACK")
    return derived, failures


def _mismatch(name: str, present: set[Row], derived: set[Row] | None) -> str:
    """Why a file's rows are not what its signed bytes yield: each row named."""
    derived = derived or set()
    yields = {(table, key): digest for table, key, digest in derived}
    problems = [
        f"{table} {key} row digest {digest[:16]}: "
        + (
            f"the file yields digest {yields[(table, key)][:16]}"
            if (table, key) in yields
            else "the file yields no such row"
        )
        for table, key, digest in sorted(present - derived)
    ] + [
        f"{table} {key}: the file yields digest {digest[:16]}, the table has no such row"
        for table, key, digest in sorted(derived - present)
        if (table, key) not in {(t, k) for t, k, _ in present}
    ]
    return f"{name}: rows differ from what its signed file yields, not recovered: " + "; ".join(
        problems
    )


def _record_events(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    files: dict[str, _Interrupted],
    evidence: dict[str, SignedBytes],
    recovered: dict[str, list[Row]],
    run_id: str,
    now: datetime,
) -> None:
    """One `intake_recoveries` row per recovered file (kept once: the key is the file)."""
    user = _os_user()

    def keys(rows: Iterable[Row], table: str) -> list[str]:
        return [key for t, key, _ in rows if t == table]

    frame = pl.DataFrame(
        [
            {
                "file_sha256": sha,
                "domain": domain,
                "origin": "file" if files[sha].attestation is None else "portal",
                "file_name": files[sha].name,
                "signer_id": evidence[sha].signed.signer.person_id,
                "signer_fingerprint": evidence[sha].signed.signer.fingerprint,
                "received_at": files[sha].received_at,
                "intake_run_id": files[sha].run_id,
                "verdict_keys": keys(rows, "verdicts"),
                "opinion_keys": keys(rows, "verdict_opinions"),
                "recovered_at": now,
                "recovered_by": run_id,
                "os_user": user,
            }
            for sha, rows in recovered.items()
        ],
        schema_overrides={"verdict_keys": pl.List(pl.String), "opinion_keys": pl.List(pl.String)},
    )
    with transaction(con):
        insert_new_rows(con, RECOVERY_TABLE, frame)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid (a bare container)
        return "unknown"
