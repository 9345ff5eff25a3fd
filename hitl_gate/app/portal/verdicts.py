"""Verdicts given in the portal, and worked files uploaded to it: the file path's own intake.

A portal verdict is written as a one-row verdict file: the case's row exactly as exported to
the reviewer, with the answer cells filled and the signed-in person as `reviewer_id`. The
portal signs (its own registered SSH key, namespace `hitl-gate-portal`) a payload naming the
person, the key that binds their credential, the session, the sign-in method, the case, batch,
verdict and the SHA-256 of those bytes; the signature is checked against the registry (the
portal key's holder must hold `*:portal`) and kept in `portal_verdicts`. The rows then go
through `take_in_signed`, the same validation, assignee check, finality and recording as a
signed file, attributed to the person. An uploaded worked file takes the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from hitl_gate.core.domain import DomainConfig
from hitl_gate.identity.acts import IdentityError, verify_act
from hitl_gate.identity.registry import Registry, Signer
from hitl_gate.identity.signatures import PORTAL
from hitl_gate.identity.signed_acts import SignedPayload, act_payload, sign_payload
from hitl_gate.review.assignments import PORTAL_SIGNER
from hitl_gate.review.intake.limits import IntakeLimits
from hitl_gate.review.intake.recovery import recover_interrupted
from hitl_gate.review.intake.results import IntakeOutcome, earlier_outcome
from hitl_gate.review.intake.sealing import IntakeSealer, seal_written
from hitl_gate.review.intake.signed import PORTAL_VERDICT_ACT, SignedReturn, signature_digest
from hitl_gate.review.intake.verdict_files import IntakeContext, SignedBytes, take_in_signed
from hitl_gate.review.settings import review_settings

PORTAL_ROLE = PORTAL_SIGNER  # `*:portal`: the key the portal signs its attestations with
VERDICT_ACT = PORTAL_VERDICT_ACT


@dataclass(frozen=True)
class Submitter:
    """Who submits, as the session proves it."""

    person_id: str
    fingerprint: str  # the person's key that binds their portal credential
    auth_method: str
    session_digest: str


@dataclass(frozen=True)
class IntakePlace:
    """Where the portal's intake reads batches and archives what it takes in."""

    batches_dir: Path
    archive_dir: Path
    review_key: bytes
    portal_key: Path  # the portal's private SSH key file
    # Seals the verdicts and opinions taken in on the connection that wrote them (None: they
    # stay unsealed and every other seal refuses them; `review.intake.sealing`).
    seal: IntakeSealer | None = None


def one_row_file(header: list[str], row: dict[str, str], answers: dict[str, str]) -> bytes:
    """The case's exported row as a one-row verdict CSV, answer cells filled."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerow([answers.get(name, row.get(name, "")) for name in header])
    return buffer.getvalue().encode("utf-8")


def attest(
    registry: Registry,
    place: IntakePlace,
    submitter: Submitter,
    fields: dict[str, str],
    at: datetime,
) -> tuple[SignedPayload, Signer]:
    """The portal's signature over what was submitted, verified against the registry."""
    payload = act_payload(
        VERDICT_ACT,
        at=at,
        person_id=submitter.person_id,
        person_fingerprint=submitter.fingerprint,
        auth_method=submitter.auth_method,
        session=submitter.session_digest,
        nonce=secrets.token_hex(8),  # each submission is its own attestation
        **fields,
    )
    signed = sign_payload(payload, place.portal_key, PORTAL)
    portal = verify_act(
        registry, payload, signed.signature, PORTAL, at=at, domain="*", roles=(PORTAL_ROLE,),
        what="portal attestation",
    )  # fmt: skip
    return signed, portal


def take_in(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    place: IntakePlace,
    submitter: Submitter,
    *,
    domain: DomainConfig,
    data: bytes,
    suffix: str,
    name: str,
    fields: dict[str, str],
    now: datetime,
) -> IntakeOutcome:
    """Attest `data` for the submitter and take it in as a signed verdict file would be.

    An earlier submission killed between its commit and its seal is recovered first
    (`review.intake.recovery`), on this connection, before anything new is written.
    """
    limits = IntakeLimits()
    if place.seal is not None:
        recover_interrupted(
            con, domain, place.seal, batches_dir=place.batches_dir,
            archive_dir=place.archive_dir, key=place.review_key, limits=limits,
            run_id="portal", now=now,
        )  # fmt: skip
    sha = hashlib.sha256(data).hexdigest()
    earlier = earlier_outcome(con, name, sha, None)
    if earlier is not None:
        return earlier
    signed, portal = attest(registry, place, submitter, {**fields, "file_sha256": sha}, now)
    place.archive_dir.mkdir(parents=True, exist_ok=True)
    archived = place.archive_dir / f"{sha}{suffix}"
    if not archived.exists():  # before the rows commit: what `recovery` re-derives them from
        archived.write_bytes(data)
    con.execute(
        "INSERT INTO portal_verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [signed.payload_sha256, sha, submitter.person_id, domain.name, fields.get("batch_id", ""),
         fields.get("case_id", ""), signed.text, signed.signature, portal.fingerprint, now],
    )  # fmt: skip
    returned = SignedBytes(
        data=data,
        name=name,
        sha=sha,
        archived=archived,
        signed=SignedReturn(
            signer=Signer(submitter.person_id, submitter.fingerprint),
            signature=signed.signature,
            signature_sha256=signature_digest(signed.signature),
        ),
    )
    context = IntakeContext(
        domain=domain,
        batches_dir=place.batches_dir,
        key=place.review_key,
        run_id="portal",
        settings=review_settings(domain),
        now=now,
        registry=registry,
        limits=limits,
    )
    try:
        outcome = take_in_signed(con, returned, context)
    except IdentityError as refusal:
        return IntakeOutcome(name, sha, None, 0, 0, False, str(refusal), (str(refusal),),
                             identity_refused=True)  # fmt: skip
    # Forged rows the seal meets are left unsealed and named by every later seal and `verify`;
    # they are not this submitter's to see.
    seal_written(con, place.seal, outcome.written)
    return outcome
