-- Ingestion registry: what the landing zone delivered across runs, and which contract judged it.
-- Documented in docs/data_contracts.md and docs/audit.md.

-- Every distinct file content ever seen, by SHA-256. A file is ingested in the partition where
-- its bytes were first seen; the same bytes elsewhere are recorded in input_files as
-- 'duplicate'. A changed file under the same name in the same day is the next version.
CREATE TABLE IF NOT EXISTS file_versions (
    domain VARCHAR NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    file_name VARCHAR NOT NULL,
    file_path VARCHAR NOT NULL,
    version INTEGER NOT NULL,           -- 1, 2, ... per (domain, partition_date, file_name)
    size_bytes BIGINT NOT NULL,
    arrived_at TIMESTAMPTZ,
    first_seen_at TIMESTAMPTZ NOT NULL,
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (domain, file_sha256)
);

-- Case ids accepted per partition (replaced with the partition), so a case id can be accepted
-- in one partition only: a later one is quarantined as duplicate_case_id_across_partitions.
CREATE TABLE IF NOT EXISTS accepted_cases (
    domain VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    case_id VARCHAR NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    run_id VARCHAR NOT NULL
);

-- Every data contract version ever applied, with its full text; decisions and input_files
-- point here by (domain, contract_digest). A version number names exactly one digest.
CREATE TABLE IF NOT EXISTS schema_versions (
    domain VARCHAR NOT NULL,
    contract_version INTEGER NOT NULL,
    contract_digest VARCHAR NOT NULL,
    contract_json VARCHAR NOT NULL,
    first_used_at TIMESTAMPTZ NOT NULL,
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (domain, contract_digest)
);

-- Every listing of a landing day folder (replaced with the partition): how many entries the
-- folder held. Each of them is in input_files (read, rejected or a repeat) or in
-- landing_refusals; the blocking check files_balance holds the two counts equal.
CREATE TABLE IF NOT EXISTS landing_listings (
    domain VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    folder VARCHAR NOT NULL,
    files_seen BIGINT NOT NULL,
    run_id VARCHAR NOT NULL,
    listed_at TIMESTAMPTZ NOT NULL
);

-- Entries of a landing day folder that were not read, and why (hidden, temporary,
-- unsupported_type, not_a_file, marker, incomplete, vanished): replaced with the partition.
CREATE TABLE IF NOT EXISTS landing_refusals (
    domain VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    file_path VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    size_bytes BIGINT,
    arrived_at TIMESTAMPTZ,
    run_id VARCHAR NOT NULL,
    listed_at TIMESTAMPTZ NOT NULL
);
