-- Review workspace: every reviewer opinion, escalations, closed batches and override signals.
-- Documented in docs/review.md. `verdicts` (00_core.sql) keeps only FINAL verdicts; a four-eyes
-- case reaches it when two different authorised reviewers agree (or the escalation role decides).

CREATE TABLE IF NOT EXISTS verdict_opinions (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    reviewer_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,             -- single | first | second | escalation
    verdict VARCHAR NOT NULL,
    verdict_reason_code VARCHAR,
    rationale VARCHAR,
    suggested_action VARCHAR,
    is_override BOOLEAN NOT NULL,
    four_eyes BOOLEAN NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    signer_fingerprint VARCHAR,         -- the key that signed the file (reviewer_id is its holder)
    PRIMARY KEY (domain, case_id, reviewer_id)  -- one opinion per reviewer per case
);

CREATE TABLE IF NOT EXISTS review_escalations (
    escalation_id VARCHAR PRIMARY KEY,  -- <kind>:<domain>:<case_id>: raised once per case and kind
    domain VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,              -- sla_breach | four_eyes_disagreement | conflict
    case_id VARCHAR NOT NULL,
    batch_id VARCHAR,
    queue VARCHAR,
    escalate_to VARCHAR,                -- the queue (and so the role) that must decide
    detail VARCHAR NOT NULL,
    raised_at TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS review_batch_closures (
    batch_id VARCHAR PRIMARY KEY,
    domain VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    closed_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS review_sweeps (
    domain VARCHAR NOT NULL,
    swept_at TIMESTAMPTZ NOT NULL,
    unrecorded_files INTEGER NOT NULL,
    escalations_raised INTEGER NOT NULL,
    batches_closed INTEGER NOT NULL
);

-- Reviewer rationale as structured signals for policy refinement: by the rule that sent the
-- case to review, reviewer, reason code, override and policy version (`decisions.rules_fired`
-- has every rule that fired).
CREATE OR REPLACE VIEW review_override_signals AS
SELECT
    o.domain,
    d.policy_version,
    d.route_rule_id AS rule_id,
    o.reviewer_id,
    o.verdict,
    o.suggested_action,
    o.is_override,
    o.verdict_reason_code,
    count(*) AS opinions
FROM verdict_opinions o
LEFT JOIN decisions d ON d.domain = o.domain AND d.case_id = o.case_id
GROUP BY ALL;

-- Escalated cases leave their batch: each is re-exported in a new signed batch of the queue it
-- escalates to (its own tables, so re-running a day's export never touches them). A case moved
-- out of a batch is closed there: a late verdict from the old batch is refused with the reason.
CREATE TABLE IF NOT EXISTS escalation_batches (
    batch_id VARCHAR PRIMARY KEY,
    domain VARCHAR NOT NULL,
    partition_date DATE NOT NULL,       -- the cases' decision day, as for review_batches
    queue VARCHAR NOT NULL,             -- the escalation queue that works it
    folder VARCHAR NOT NULL,
    case_count INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    manifest_sha256 VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS escalation_batch_cases (
    escalation_id VARCHAR PRIMARY KEY,  -- each escalation is exported once
    batch_id VARCHAR NOT NULL,          -- the escalation batch the case went to
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    from_batch_id VARCHAR NOT NULL,     -- the batch the case left (closed there)
    from_queue VARCHAR NOT NULL,
    exported_at TIMESTAMPTZ NOT NULL
);

-- Every batch, first-level or escalation, with its queue and due time.
CREATE OR REPLACE VIEW review_all_batches AS
SELECT batch_id, domain, queue, created_at, due_at, FALSE AS escalation FROM review_batches
UNION ALL
SELECT batch_id, domain, queue, created_at, due_at, TRUE AS escalation FROM escalation_batches;

-- The cases each batch still holds: its members minus those escalated out of it.
CREATE OR REPLACE VIEW review_batch_members AS
WITH members AS (
    SELECT batch_id, domain, case_id FROM review_batch_cases
    UNION
    SELECT batch_id, domain, case_id FROM review_second_opinion_cases
    UNION
    SELECT DISTINCT batch_id, domain, case_id FROM escalation_batch_cases
)
SELECT b.domain, b.batch_id, b.queue, b.created_at, b.due_at, b.escalation, m.case_id
FROM review_all_batches b
JOIN members m ON m.domain = b.domain AND m.batch_id = b.batch_id
WHERE NOT EXISTS (
    SELECT 1 FROM escalation_batch_cases x
    WHERE x.domain = m.domain AND x.from_batch_id = m.batch_id AND x.case_id = m.case_id
);
