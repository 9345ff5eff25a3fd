-- Auditor views over the audit chain and the lineage tables (docs/audit.md has examples).

-- `audit_events` and `case_history` (the log unpacked, both chains): 75_segment_log.sql.

-- What each reviewer decided, and how fast after the batch was exported.
CREATE OR REPLACE VIEW reviewer_activity AS
SELECT v.domain, v.reviewer_id,
       count(*) AS verdicts,
       count(*) FILTER (WHERE v.verdict = 'approve') AS approved,
       count(*) FILTER (WHERE v.verdict = 'decline') AS declined,
       count(DISTINCT v.batch_id) AS batches,
       min(v.received_at) AS first_verdict_at,
       max(v.received_at) AS last_verdict_at,
       median(epoch(v.received_at - b.created_at) / 3600.0) AS median_hours_to_verdict,
       count(*) FILTER (WHERE v.received_at > b.due_at) AS after_due
FROM verdicts v LEFT JOIN review_batches b USING (batch_id)
GROUP BY ALL;

-- Policy versions with when they were used and what they decided.
CREATE OR REPLACE VIEW policy_history AS
SELECT p.domain, p.policy_version, p.policy_digest, p.owner, p.effective_date, p.first_used_at,
       min(d.decided_at) AS first_decision_at, max(d.decided_at) AS last_decision_at,
       count(d.case_id) AS cases,
       count(d.case_id) FILTER (WHERE d.route = 'auto_approve') AS auto_approved,
       count(d.case_id) FILTER (WHERE d.route = 'auto_decline') AS auto_declined,
       count(d.case_id) FILTER (WHERE d.route = 'human_review') AS sent_to_review
FROM policy_versions p LEFT JOIN decisions d USING (policy_digest)
GROUP BY ALL;

-- Model versions with when they were used and the scores they produced.
CREATE OR REPLACE VIEW model_history AS
SELECT m.model_name, m.model_version, m.model_run_id, m.artifact_digest, m.first_used_at,
       count(d.case_id) AS cases, avg(d.pd) AS mean_pd,
       min(d.partition_date) AS first_day, max(d.partition_date) AS last_day
FROM model_versions m
LEFT JOIN decisions d ON d.model_name = m.model_name AND d.model_version = m.model_version
GROUP BY ALL;

-- Decisions and executed actions per (policy, model) version pair.
CREATE OR REPLACE VIEW decisions_per_version AS
SELECT d.domain, d.policy_version, d.model_version, d.route,
       count(*) AS cases,
       count(e.case_id) FILTER (WHERE e.action = 'approve') AS executed_approve,
       count(e.case_id) FILTER (WHERE e.action = 'decline') AS executed_decline,
       count(*) - count(e.case_id) AS not_executed
FROM decisions d LEFT JOIN executions e USING (domain, case_id)
GROUP BY ALL;

-- Later outcomes next to the decision and the action they followed.
CREATE OR REPLACE VIEW outcome_links AS
SELECT o.domain, o.case_id, o.outcome, o.observed_on, e.action, e.decided_by,
       d.policy_version, d.model_version, d.pd, d.risk_band, o.source_file
FROM outcomes o
LEFT JOIN executions e USING (domain, case_id)
LEFT JOIN decisions d USING (domain, case_id);
