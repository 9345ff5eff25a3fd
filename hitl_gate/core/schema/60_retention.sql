-- Retention: what `hitl retention apply` removed, and under which rule (docs/audit.md,
-- "Retention"). Itself sealed into the audit chain (event `retention_applied`), so a removal is
-- as provable as the decision it followed. One row per removed file or folder, and per day of
-- redacted quarantine values; the primary key makes a repeated or resumed apply idempotent.
CREATE TABLE IF NOT EXISTS retention_actions (
    domain VARCHAR NOT NULL,
    data_class VARCHAR NOT NULL,        -- raw_inputs | reviewer_files | quarantined_values
    kind VARCHAR NOT NULL,              -- landing_file | stored_partition | review_batch | verdict_file | quarantine_values | store_rewrite (a database rewritten so removed bytes are gone; target: its path and the run)
    target VARCHAR NOT NULL,            -- the path removed, or `quarantine/<day>` for redacted values
    partition_date DATE NOT NULL,       -- the day the data belongs to (its age is counted from it)
    items BIGINT NOT NULL,              -- files removed, or quarantine values redacted
    sha256 VARCHAR,                     -- SHA-256 of a removed file (matches input_files / verdict_files)
    retention_months INTEGER NOT NULL,
    legal_minimum_months INTEGER NOT NULL,
    as_of DATE NOT NULL,
    run_id VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, kind, target)
);
