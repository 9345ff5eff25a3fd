-- Policy control (issue 5): which policy version is in force, the kill switch, and the columns
-- routed decisions gained for QA sampling, halts and reviewer capacity. Documented in
-- docs/policies.md. Both tables are append-only event logs: the latest row per domain is the
-- current state, every earlier row is the history auditors read.

CREATE TABLE IF NOT EXISTS policy_activations (
    domain VARCHAR NOT NULL,
    seq BIGINT NOT NULL,                -- 1, 2, ... per domain, in the order of activation
    action VARCHAR NOT NULL,            -- activate | approve | rollback
    policy_version VARCHAR NOT NULL,
    policy_digest VARCHAR NOT NULL,
    effective_date DATE,
    policy_source VARCHAR NOT NULL,     -- the file it was activated from
    policy_text VARCHAR NOT NULL,       -- the exact bytes: a rollback needs no file
    activated_by VARCHAR NOT NULL,
    approved_by VARCHAR,                -- the second person (approve rows); NULL otherwise
    reason VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, seq)
);

CREATE TABLE IF NOT EXISTS automation_halts (
    domain VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    halted BOOLEAN NOT NULL,            -- true: halt (kill switch on), false: resume
    reason VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, seq)
);

-- Signed acts (issue 17, docs/people.md): every activation, approval, rollback, halt and resume
-- carries the signer's key fingerprint, the exact signed payload (canonical JSON: act, domain,
-- policy digest or halt reason, time), the armored SSH signature and the payload's SHA-256, so
-- an auditor can re-verify each row with `ssh-keygen -Y verify`. The actor columns hold the
-- registry's person id of that key, never a typed name. An activation routes only once a
-- different person's `approve` row names it (`approves_seq`).
ALTER TABLE policy_activations ADD COLUMN IF NOT EXISTS approves_seq BIGINT;
ALTER TABLE policy_activations ADD COLUMN IF NOT EXISTS signer_fingerprint VARCHAR;
ALTER TABLE policy_activations ADD COLUMN IF NOT EXISTS act_payload VARCHAR;
ALTER TABLE policy_activations ADD COLUMN IF NOT EXISTS signature VARCHAR;
ALTER TABLE policy_activations ADD COLUMN IF NOT EXISTS payload_sha256 VARCHAR;
ALTER TABLE automation_halts ADD COLUMN IF NOT EXISTS signer_fingerprint VARCHAR;
ALTER TABLE automation_halts ADD COLUMN IF NOT EXISTS act_payload VARCHAR;
ALTER TABLE automation_halts ADD COLUMN IF NOT EXISTS signature VARCHAR;
ALTER TABLE automation_halts ADD COLUMN IF NOT EXISTS payload_sha256 VARCHAR;
-- A resume needs two people: the second signer of the same payload.
ALTER TABLE automation_halts ADD COLUMN IF NOT EXISTS second_actor VARCHAR;
ALTER TABLE automation_halts ADD COLUMN IF NOT EXISTS second_fingerprint VARCHAR;
ALTER TABLE automation_halts ADD COLUMN IF NOT EXISTS second_signature VARCHAR;

ALTER TABLE decisions ADD COLUMN IF NOT EXISTS proposed_route VARCHAR;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS route_override VARCHAR;  -- qa_sample | halt
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS qa_sample BOOLEAN;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS qa_probability DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS review_deferred BOOLEAN;
