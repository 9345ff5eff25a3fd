-- hitl-gate audit and lineage schema (DuckDB), core tables. Documented in docs/audit.md.
-- Files in this folder run in name order on every write connection: tables first, views last.

CREATE TABLE IF NOT EXISTS input_files (
    domain VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    file_path VARCHAR NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    size_bytes BIGINT,
    arrived_at TIMESTAMPTZ,
    status VARCHAR NOT NULL,            -- accepted | rejected
    error VARCHAR,
    rows_read BIGINT NOT NULL,
    rows_accepted BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    contract_version INTEGER NOT NULL,
    contract_digest VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS quarantine (
    domain VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    file_path VARCHAR NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    row_number BIGINT,                  -- NULL when the whole file was rejected
    case_id VARCHAR,
    column_name VARCHAR,
    check_name VARCHAR NOT NULL,
    value VARCHAR,
    message VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS policy_versions (
    policy_digest VARCHAR PRIMARY KEY,
    policy_version VARCHAR NOT NULL,
    domain VARCHAR NOT NULL,
    owner VARCHAR,
    effective_date DATE,
    policy_text VARCHAR NOT NULL,
    first_used_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS model_versions (
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    model_run_id VARCHAR NOT NULL,
    artifact_digest VARCHAR NOT NULL,
    first_used_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model_name, model_version)
);

CREATE TABLE IF NOT EXISTS decisions (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    event_time TIMESTAMPTZ,
    source_file VARCHAR,
    source_sha256 VARCHAR,
    source_row BIGINT,
    contract_version INTEGER,
    contract_digest VARCHAR,
    feature_service VARCHAR,
    feature_digest VARCHAR,
    model_name VARCHAR,
    model_version VARCHAR,
    model_run_id VARCHAR,
    model_artifact_digest VARCHAR,
    pd DOUBLE,
    score BIGINT,
    risk_band VARCHAR,
    reason_codes VARCHAR[],
    policy_version VARCHAR,
    policy_digest VARCHAR,
    route VARCHAR NOT NULL,             -- auto_approve | auto_decline | human_review
    route_rule_id VARCHAR,
    route_reason_code VARCHAR,
    rules_fired VARCHAR[],
    review_queue VARCHAR,
    review_priority INTEGER,
    run_id VARCHAR NOT NULL,
    decided_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, case_id)
);

CREATE TABLE IF NOT EXISTS review_batches (
    batch_id VARCHAR PRIMARY KEY,
    domain VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    queue VARCHAR NOT NULL,
    folder VARCHAR NOT NULL,
    case_count INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    manifest_sha256 VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS review_batch_cases (
    batch_id VARCHAR NOT NULL,
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    PRIMARY KEY (domain, case_id)
);

CREATE TABLE IF NOT EXISTS verdict_files (
    file_sha256 VARCHAR PRIMARY KEY,    -- exactly-once: a file's content is ingested once
    file_name VARCHAR NOT NULL,
    archived_path VARCHAR NOT NULL,
    batch_id VARCHAR,
    rows_accepted INTEGER NOT NULL,
    rows_rejected INTEGER NOT NULL,
    error VARCHAR,
    received_at TIMESTAMPTZ NOT NULL,
    run_id VARCHAR NOT NULL,
    signer_id VARCHAR,                  -- the registered person whose key signed the file
    signer_fingerprint VARCHAR,         -- that key (SHA256:...): the identity, not a typed id
    signature VARCHAR,                  -- the detached SSH signature (namespace hitl-gate-verdicts)
    signature_sha256 VARCHAR            -- a signature is used for one file only (no replay)
);

CREATE TABLE IF NOT EXISTS verdicts (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    verdict VARCHAR NOT NULL,
    verdict_reason_code VARCHAR,
    rationale VARCHAR,
    reviewer_id VARCHAR NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, case_id)       -- first valid verdict wins; later ones are rejected
);

CREATE TABLE IF NOT EXISTS verdict_rejections (
    file_sha256 VARCHAR NOT NULL,
    row_number BIGINT,
    case_id VARCHAR,
    column_name VARCHAR,
    value VARCHAR,
    message VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS executions (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    action VARCHAR NOT NULL,            -- approve | decline
    decided_by VARCHAR NOT NULL,        -- policy | reviewer
    reviewer_id VARCHAR,
    route VARCHAR NOT NULL,
    policy_version VARCHAR,
    model_version VARCHAR,
    reason_codes VARCHAR[],
    run_id VARCHAR NOT NULL,
    executed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, case_id)       -- a case is executed once, ever
);

CREATE TABLE IF NOT EXISTS partition_accounting (
    domain VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    rows_read BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    executed BIGINT NOT NULL,
    pending_review BIGINT NOT NULL,
    balanced BOOLEAN NOT NULL,
    run_id VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, partition_date)
);
