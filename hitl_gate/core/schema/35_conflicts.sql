-- Conflicts on final cases and their resolution by the escalation role. Documented in
-- docs/review.md. A differing verdict on a final case raises a `conflict` escalation (30_review),
-- exported as an escalation batch; a reviewer of the escalation queue resolves it here. A case
-- is executed once, ever: a resolution that disagrees with an executed action never executes
-- again, it becomes a post-execution reversal request for downstream systems.

CREATE TABLE IF NOT EXISTS conflict_resolutions (
    escalation_id VARCHAR PRIMARY KEY,  -- the conflict escalation resolved (one per case)
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,          -- the escalation batch the resolution came from
    reviewer_id VARCHAR NOT NULL,       -- who resolved it (authorised for the escalation queue)
    verdict VARCHAR NOT NULL,
    verdict_reason_code VARCHAR,
    rationale VARCHAR NOT NULL,         -- required: why this verdict settles the conflict
    prior_verdict VARCHAR NOT NULL,     -- the final verdict that was disputed
    executed_action VARCHAR,            -- the action already executed, if any, when resolved
    outcome VARCHAR NOT NULL,           -- upheld | changed (decides execution) | reversal_requested
    file_sha256 VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    resolved_at TIMESTAMPTZ NOT NULL
);

-- A resolution is a signed act (issue 17, docs/people.md): the key fingerprint of the verdict
-- file's verified signer and the armored SSH signature over the file's bytes (`file_sha256`).
ALTER TABLE conflict_resolutions ADD COLUMN IF NOT EXISTS signer_fingerprint VARCHAR;
ALTER TABLE conflict_resolutions ADD COLUMN IF NOT EXISTS file_signature VARCHAR;

CREATE TABLE IF NOT EXISTS reversal_requests (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    escalation_id VARCHAR NOT NULL,     -- the conflict whose resolution asks for the reversal
    executed_action VARCHAR NOT NULL,   -- what was executed (and stays executed here)
    requested_action VARCHAR NOT NULL,  -- what the escalation role decided instead
    requested_by VARCHAR NOT NULL,
    reason_code VARCHAR,
    rationale VARCHAR NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, case_id)       -- at most one per case: a case conflicts once
);

-- The verdict that decides execution: the first final verdict, or the resolution of its
-- conflict when that came before execution (a later resolution is a reversal request instead).
CREATE OR REPLACE VIEW effective_verdicts AS
SELECT
    v.domain,
    v.case_id,
    coalesce(r.batch_id, v.batch_id) AS batch_id,
    coalesce(r.verdict, v.verdict) AS verdict,
    CASE WHEN r.escalation_id IS NULL THEN v.verdict_reason_code ELSE r.verdict_reason_code END
        AS verdict_reason_code,
    coalesce(r.rationale, v.rationale) AS rationale,
    coalesce(r.reviewer_id, v.reviewer_id) AS reviewer_id,
    coalesce(r.resolved_at, v.received_at) AS received_at,
    r.escalation_id IS NOT NULL AS resolved_conflict
FROM verdicts v
LEFT JOIN conflict_resolutions r
    ON r.domain = v.domain AND r.case_id = v.case_id AND r.executed_action IS NULL;
