-- Tamper-evident audit log (docs/audit.md, "The audit chain").
-- `entry` is the hashed text: the previous entry's hash (64 hex), '|', then a canonical JSON
-- envelope {"at","digest","key","run_id","type"}: `digest` is the SHA-256 of the lineage row's
-- canonical JSON (the row stays in its table; `hitl audit verify` recomputes it from there).
-- `entry_hash` = SHA-256(entry). Because
-- the previous hash is part of the hashed text, changing, deleting or reordering any entry breaks
-- every later link; the signed checkpoints (in the database AND as files outside it) pin the head.

CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGINT PRIMARY KEY,             -- 1, 2, 3, ... with no gaps
    entry_hash VARCHAR NOT NULL,
    entry VARCHAR NOT NULL
);

-- Which (event, entity, content) has been logged: a cache that makes re-runs append nothing.
-- Not part of the proof: losing it can only cause duplicate events, never hide a change.
-- (event_type, entity_key, content_digest) is unique by construction (the sealer appends only
-- what this table lacks, once per slice); no PRIMARY KEY, whose index cost a day's first seal
-- about a second per million events. Databases made before keep theirs.
CREATE TABLE IF NOT EXISTS audit_log_index (
    event_type VARCHAR NOT NULL,
    entity_key VARCHAR NOT NULL,
    content_digest VARCHAR NOT NULL,
    seq BIGINT NOT NULL
);

-- Fingerprints (DuckDB `hash()` of a lineage row's stable columns) whose content has been
-- canonicalised and checked against the log: sealing skips these rows, so it canonicalises only
-- what is new since the last seal. A cache like the index: dropping it costs one full re-check
-- and never appends a duplicate; a 64-bit collision could only delay logging a row, which
-- `hitl audit verify` (SHA-256 digests of every row) then reports.
CREATE TABLE IF NOT EXISTS audit_seen_rows (
    event_type VARCHAR NOT NULL,
    fingerprint UBIGINT NOT NULL
);

-- Every run (or CLI command) that swept its events into the log, even when nothing was new.
CREATE TABLE IF NOT EXISTS audit_runs (
    run_id VARCHAR PRIMARY KEY,
    sealed_at TIMESTAMPTZ NOT NULL,
    entries_appended BIGINT NOT NULL
);

-- Signed checkpoints: head of the chain after a run and the Merkle root of that run's entries.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    last_seq BIGINT PRIMARY KEY,
    first_seq BIGINT NOT NULL,
    head_hash VARCHAR NOT NULL,
    merkle_root VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at VARCHAR NOT NULL,        -- UTC ISO-8601, as signed
    public_key VARCHAR NOT NULL,        -- Ed25519, hex
    signature VARCHAR NOT NULL,         -- Ed25519 over the canonical JSON of the fields above
    merkle_fanout INTEGER DEFAULT 2     -- children per Merkle node; signed when not 2
);
-- Databases made before `merkle_fanout` existed: their checkpoints used the binary tree.
ALTER TABLE audit_checkpoints ADD COLUMN IF NOT EXISTS merkle_fanout INTEGER DEFAULT 2;

-- Adverse-action notices: a declined case and up to four specific reasons in plain language.
CREATE TABLE IF NOT EXISTS adverse_actions (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    decided_by VARCHAR NOT NULL,
    reason_codes VARCHAR[] NOT NULL,
    reasons VARCHAR[] NOT NULL,
    run_id VARCHAR NOT NULL,
    issued_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, case_id)       -- issued once, with the execution
);

-- Later outcomes (e.g. repayment status) linked to the executed decision.
CREATE TABLE IF NOT EXISTS outcomes (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL,
    observed_on DATE NOT NULL,          -- `observed_on` column of the file, else its date
    source_file VARCHAR NOT NULL,
    source_sha256 VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    linked BOOLEAN NOT NULL,            -- an executed decision exists for the case
    run_id VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, case_id, source_sha256)  -- a file's outcome for a case, once
);

-- Case lookups (`hitl audit trace`, auditors' WHERE case_id = ?) use these ART indexes; the
-- primary keys start with `domain`, so they cannot serve a lookup by case id alone.
CREATE INDEX IF NOT EXISTS decisions_case_id ON decisions (case_id);
CREATE INDEX IF NOT EXISTS executions_case_id ON executions (case_id);
CREATE INDEX IF NOT EXISTS verdicts_case_id ON verdicts (case_id);
CREATE INDEX IF NOT EXISTS review_batch_cases_case_id ON review_batch_cases (case_id);
