"""Who authorised a retention deletion: a compliance officer's signed act, checked and kept.

Removing personal data is irreversible, so `hitl retention apply` runs only on a signature by
a registered key whose holder is `compliance` in every domain concerned (docs/people.md). The
signed payload names the domains and the as-of day; the run that removes files carries the
authorisation's run id, so each `retention_actions` row points at the signature behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import duckdb

from hitl_gate.identity.acts import IdentityError
from hitl_gate.identity.registry import RegistryError
from hitl_gate.identity.signatures import RETENTION
from hitl_gate.identity.signed_acts import (
    SignedPayload,
    VerifiedAct,
    act_payload,
    check_signed_act,
    refuse_replay,
)
from hitl_gate.identity.store import load_registry

ACT_RETENTION = "retention_apply"
COMPLIANCE = "compliance"
RETENTION_ROLES = (COMPLIANCE,)


class RetentionNotAuthorised(ValueError):
    """A retention apply whose signature is missing, invalid or by someone who may not."""


def retention_payload(domains: Sequence[str], as_of: date, at: datetime | None = None) -> bytes:
    """What the compliance officer signs: the domains and the day retention is computed for."""
    return act_payload(ACT_RETENTION, at, domains=sorted(domains), as_of=as_of.isoformat())


def retention_run_id(act: SignedPayload) -> str:
    """The run id of the apply an authorisation allows (ties `retention_actions` to it)."""
    return f"cli-retention-{act.payload_sha256[:32]}"


def authorise_retention(
    con: duckdb.DuckDBPyConnection,
    act: SignedPayload,
    domains: Sequence[str],
    as_of: date,
    now: datetime | None = None,
) -> VerifiedAct:
    """Check the signed act for every domain and record it; refuse naming what is wrong."""
    what = f"retention apply as of {as_of} for {', '.join(sorted(domains))}"
    expected = {"act": ACT_RETENTION, "domains": sorted(domains), "as_of": as_of.isoformat()}
    try:
        registry = load_registry(con)
        verified = [
            check_signed_act(
                registry,
                act,
                RETENTION,
                expected=expected,
                roles=RETENTION_ROLES,
                domain=domain,
                what=what,
                now=now,
            )
            for domain in sorted(domains)
        ]
        refuse_replay(con, "retention_authorisations", act, what)
    except (IdentityError, RegistryError) as error:
        raise RetentionNotAuthorised(str(error)) from error
    if not verified:
        raise RetentionNotAuthorised(f"{what}: no domain to apply retention to")
    signer = verified[0].signer
    con.execute(
        "INSERT INTO retention_authorisations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            retention_run_id(act),
            ",".join(sorted(domains)),
            as_of,
            signer.person_id,
            signer.fingerprint,
            act.text,
            act.signature,
            act.payload_sha256,
            datetime.now(UTC),
        ],
    )
    return verified[0]
