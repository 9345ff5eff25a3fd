-- Intakes killed between their commit and their seal, recovered by a later intake
-- (hitl_gate/review/intake/recovery.py, docs/audit.md): one row per recovered file, sealed
-- with the rows it recovered. Insert-once: a file is recovered once.
CREATE TABLE IF NOT EXISTS intake_recoveries (
    file_sha256 VARCHAR PRIMARY KEY,    -- the archived, signed file whose rows were recovered
    domain VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,            -- file (the reviewer's signature) | portal (attestation)
    file_name VARCHAR NOT NULL,
    signer_id VARCHAR NOT NULL,         -- whose verdicts they are (re-verified, see origin)
    signer_fingerprint VARCHAR NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,   -- when the interrupted intake took the file in
    intake_run_id VARCHAR NOT NULL,     -- the run that was interrupted
    verdict_keys VARCHAR[] NOT NULL,    -- entity keys sealed by the recovery
    opinion_keys VARCHAR[] NOT NULL,
    recovered_at TIMESTAMPTZ NOT NULL,
    recovered_by VARCHAR NOT NULL,      -- the run (or `portal`) whose intake recovered it
    os_user VARCHAR NOT NULL            -- the account that process ran as
);
