-- Signed retention deletions (issue 17, docs/people.md): before `hitl retention apply` removes
-- anything, a compliance officer of every domain concerned signs the act (domains, as-of day,
-- time); the row keeps their key fingerprint, the signed payload, the SSH signature and its
-- SHA-256 (a signature counts once). `run_id` is the run of the `retention_actions` rows it
-- authorised (none when the apply then refused: nothing was removed).
CREATE TABLE IF NOT EXISTS retention_authorisations (
    run_id VARCHAR PRIMARY KEY,
    domains VARCHAR NOT NULL,           -- comma-separated, sorted
    as_of DATE NOT NULL,
    signer_id VARCHAR NOT NULL,         -- the registry's person id of the signing key
    signer_fingerprint VARCHAR NOT NULL,
    act_payload VARCHAR NOT NULL,       -- canonical JSON, exactly the signed bytes
    signature VARCHAR NOT NULL,         -- armored SSH signature (namespace hitl-gate-retention)
    payload_sha256 VARCHAR NOT NULL UNIQUE,
    recorded_at TIMESTAMPTZ NOT NULL
);
