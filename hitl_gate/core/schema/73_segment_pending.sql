-- Rows a run has copied into its segment and not folded yet (hitl_gate/audit/run_seal.py,
-- docs/audit.md "Room to grow"): a concurrent run's pick leaves them to their owner. The owner
-- holds `<segment>.lock` from pick to fold; entries of a segment whose lock nobody holds (its
-- run died) are dropped by the next pick, which copies their rows again. A cache like
-- `audit_seen_rows`: not evidence, verify never reads it.
CREATE TABLE IF NOT EXISTS audit_segment_pending (
    segment_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,
    fingerprint UBIGINT NOT NULL
);
