-- The review portal (docs/portal.md, issue 22). All three tables are insert-once and sealed.

-- A person's portal credential, bound to them by their own SSH signature (namespace
-- hitl-gate-portal) over a payload carrying the digests of the password hash and TOTP secret.
-- The secrets themselves stay in <home>/secrets/portal/; the newest enrolment of a person wins.
CREATE TABLE IF NOT EXISTS portal_enrolments (
    enrolment_id VARCHAR PRIMARY KEY,   -- SHA-256 of the signed payload
    person_id VARCHAR NOT NULL,
    payload VARCHAR NOT NULL,           -- canonical JSON, exactly the signed bytes
    signature VARCHAR NOT NULL,
    signer_fingerprint VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);

-- Every sign-in, failed attempt, lockout, sign-out and refusal of the portal. `person_id` is
-- the registry id the attempt named (no applicant data); sessions and clients as digests.
CREATE TABLE IF NOT EXISTS portal_events (
    event_id VARCHAR PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL,
    kind VARCHAR NOT NULL,              -- sign_in | sign_in_failed | locked_out | sign_out | ...
    person_id VARCHAR,
    auth_method VARCHAR,                -- password+totp | oidc
    session_digest VARCHAR,
    client_digest VARCHAR,
    detail VARCHAR NOT NULL
);

-- A verdict given in the portal: the portal's SSH signature over a payload naming the person,
-- session, sign-in method, case, batch, verdict and the one-row verdict file it took in.
CREATE TABLE IF NOT EXISTS portal_verdicts (
    attestation_sha256 VARCHAR PRIMARY KEY, -- SHA-256 of the signed payload
    file_sha256 VARCHAR NOT NULL,       -- the verdict file taken in (verdict_files.file_sha256)
    person_id VARCHAR NOT NULL,
    domain VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    payload VARCHAR NOT NULL,
    signature VARCHAR NOT NULL,
    portal_fingerprint VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
