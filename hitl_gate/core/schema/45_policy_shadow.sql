-- Shadow policies (issue 5): a candidate policy routes every live partition next to the policy
-- in force; its routes are stored here and compared in the run's metadata, never acted on
-- (nothing downstream reads `shadow_decisions`). Documented in docs/policies.md.

-- Append-only: the latest row per domain says which candidate runs in shadow (`set`) or none
-- (`clear`); every earlier row is the history.
CREATE TABLE IF NOT EXISTS policy_shadows (
    domain VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    action VARCHAR NOT NULL,            -- set | clear
    policy_version VARCHAR,
    policy_digest VARCHAR,
    policy_source VARCHAR,
    policy_text VARCHAR,                -- the exact bytes that route in shadow
    actor VARCHAR NOT NULL,
    reason VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, seq)
);

-- One row per case and shadow policy; a re-run of a day replaces that policy's rows of the day.
CREATE TABLE IF NOT EXISTS shadow_decisions (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    policy_version VARCHAR NOT NULL,
    policy_digest VARCHAR NOT NULL,
    proposed_route VARCHAR NOT NULL,    -- the shadow policy's own route
    route VARCHAR NOT NULL,             -- after its QA sample and capacity, as live would be
    route_rule_id VARCHAR,
    route_reason_code VARCHAR,
    rules_fired VARCHAR[],
    review_queue VARCHAR,
    live_proposed_route VARCHAR NOT NULL,
    live_route VARCHAR NOT NULL,
    live_policy_version VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    decided_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, case_id, policy_digest)
);
