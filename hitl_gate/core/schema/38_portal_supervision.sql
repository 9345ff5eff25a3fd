-- Reassignments made by a supervisor signed in to the review portal (issue 22). The row in
-- `review_assignments` names the supervisor and the key their portal credential is bound to;
-- its `signature` is the portal's attestation over `payload` (namespace hitl-gate-portal),
-- kept here with the payload so anyone can verify it (review/assignments.reassign_in_portal).
CREATE TABLE IF NOT EXISTS portal_reassignments (
    batch_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,                -- the review_assignments row it created
    supervisor_id VARCHAR NOT NULL,
    supervisor_fingerprint VARCHAR NOT NULL,
    session_digest VARCHAR NOT NULL,    -- sha256 of the session token, never the token
    payload VARCHAR NOT NULL,           -- the canonical JSON the portal signed
    signature VARCHAR NOT NULL,         -- the portal's SSH signature over the payload
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (batch_id, seq)
);
