-- The name the auditors' views read the folded per-run segments' entries by
-- (hitl_gate/audit/run_segments.py, docs/audit.md "Reading what segments sealed"). Folds copy
-- nothing here since 2026-12-06: a reading session (`run_seal.reading_session`) shadows this
-- table with a temporary view over the segment files read in place, and the replica writes a
-- Parquet part per folded leaf, so `audit_events` and `case_history` list what a segment
-- sealed beside the single chain; any other session lists the single chain only. Not the
-- proof: the segment file holds the chain. A copy an earlier fold left is checked by
-- `hitl audit verify` against its segment (same seq, same hash, text hashing to it, none
-- missing or added), and rows for a segment no leaf names are named in any home.
CREATE TABLE IF NOT EXISTS audit_segment_log (
    segment_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,                -- the entry's seq in its segment's chain
    entry_hash VARCHAR NOT NULL,
    entry VARCHAR NOT NULL
);

-- A key hand-over also names the last global checkpoint signed by the old key (NULL: made
-- before the field existed, read as 0), so verify follows it across the global log.
ALTER TABLE audit_key_handovers ADD COLUMN IF NOT EXISTS after_global_seq BIGINT;

-- The audit log with its envelope unpacked, both chains: the single chain (`segment_id`
-- NULL) and every folded segment's entries (`seq` counts within the segment). `prev_hash` is
-- the first 64 characters of the hashed entry, so it cannot be edited without breaking
-- `entry_hash`.
CREATE OR REPLACE VIEW audit_events AS
SELECT
    seq,
    substr(entry, 1, 64) AS prev_hash,
    entry_hash,
    json_extract_string(substr(entry, 66), '$.type') AS event_type,
    json_extract_string(substr(entry, 66), '$.key') AS entity_key,
    json_extract_string(substr(entry, 66), '$.digest') AS content_digest,
    json_extract_string(substr(entry, 66), '$.run_id') AS run_id,
    json_extract_string(substr(entry, 66), '$.at') AS recorded_at,
    segment_id
FROM (SELECT seq, entry_hash, entry, NULL::VARCHAR AS segment_id FROM audit_log
      UNION ALL
      SELECT seq, entry_hash, entry, segment_id FROM audit_segment_log);

-- Every logged event of a case (filter on domain and case_id; order by recorded_at, seq:
-- seq alone orders one chain only). `segment_id` says which chain holds it (NULL: the single
-- chain).
CREATE OR REPLACE VIEW case_history AS
SELECT split_part(entity_key, '/', 1) AS domain,
       split_part(entity_key, '/', 2) AS case_id,
       seq, event_type, run_id, recorded_at, content_digest, segment_id
FROM audit_events
WHERE event_type IN ('decision', 'case_sent_for_review', 'verdict_opinion', 'verdict',
                     'execution', 'adverse_action', 'reversal_requested', 'outcome_recorded');
