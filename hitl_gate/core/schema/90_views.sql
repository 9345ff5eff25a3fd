-- Views for auditors; they run after every table file.

CREATE OR REPLACE VIEW case_trace AS
SELECT
    d.domain, d.case_id, d.partition_date, d.event_time,
    d.source_file, d.source_sha256, d.source_row, d.contract_version,
    d.feature_service, d.feature_digest,
    d.model_name, d.model_version, d.model_run_id, d.pd, d.score, d.risk_band, d.reason_codes,
    d.policy_version, d.policy_digest, d.route, d.route_rule_id, d.route_reason_code, d.rules_fired,
    d.review_queue, bc.batch_id,
    v.verdict, v.reviewer_id, v.rationale, v.received_at AS verdict_received_at,
    e.action AS executed_action, e.decided_by, e.executed_at,
    CASE
        WHEN e.case_id IS NOT NULL THEN 'executed'
        WHEN d.route = 'human_review' THEN 'pending_review'
        ELSE 'pending_execution'
    END AS status,
    d.run_id AS decision_run_id, e.run_id AS execution_run_id
FROM decisions d
LEFT JOIN review_batch_cases bc ON bc.domain = d.domain AND bc.case_id = d.case_id
LEFT JOIN verdicts v ON v.domain = d.domain AND v.case_id = d.case_id
LEFT JOIN executions e ON e.domain = d.domain AND e.case_id = d.case_id;

CREATE OR REPLACE VIEW case_status_summary AS
SELECT domain, status, count(*) AS cases FROM case_trace GROUP BY ALL
UNION ALL
SELECT domain, 'quarantined' AS status, count(DISTINCT (file_sha256, coalesce(row_number, -1)))
FROM quarantine GROUP BY ALL;
