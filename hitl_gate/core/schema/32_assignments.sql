-- Who must answer each review batch (issue 17). Append-only: the row with the highest `seq`
-- per batch is the current assignee; a reassignment by a supervisor is a new, signed row.
-- Only the current assignee's signature is accepted on a verdict file for the batch.
CREATE TABLE IF NOT EXISTS review_assignments (
    batch_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,                -- 1 at export, 2, 3, ... per reassignment
    domain VARCHAR NOT NULL,
    queue VARCHAR NOT NULL,
    assignee_id VARCHAR NOT NULL,       -- a person of the registry (people_acts)
    opinion_slot INTEGER NOT NULL,      -- 0 single review; 1 or 2 for the two four-eyes batches
    assigned_by VARCHAR NOT NULL,       -- 'pipeline' at export, else the supervisor's person id
    signer_fingerprint VARCHAR,         -- the supervisor's key (NULL for the pipeline's own)
    signature VARCHAR,                  -- the supervisor's SSH signature of the reassignment
    reason VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (batch_id, seq)
);
