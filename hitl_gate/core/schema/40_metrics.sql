-- Observability: decision metrics per partition, stage timestamps per case. docs/observability.md.

-- One row per metric value of a domain and day (long format, so new metrics need no migration):
-- metric = what is measured, dimension/key = how it is broken down ('all'/'all' for a total).
CREATE TABLE IF NOT EXISTS decision_metrics (
    domain VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    metric VARCHAR NOT NULL,            -- e.g. cases, rate, override_rate, time_to_decision_p95_s
    dimension VARCHAR NOT NULL,         -- e.g. all, route, queue, risk_band, reviewer, rule
    key VARCHAR NOT NULL,               -- the dimension's value, e.g. auto_approve
    value DOUBLE,
    run_id VARCHAR NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, partition_date, metric, dimension, key)
);

-- When each stage of each Dagster run materialised each partition (from the run's event log),
-- so a case's "scored" time is the time its scoring step finished in the run that decided it.
CREATE TABLE IF NOT EXISTS stage_materializations (
    domain VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    materialized_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, run_id, stage, partition_date)
);

-- One row per case: when it passed each stage (NULL = not reached yet).
CREATE OR REPLACE VIEW case_stage_times AS
SELECT
    d.domain, d.case_id, d.partition_date, d.route, d.route_rule_id, d.review_queue,
    d.risk_band, d.policy_version, d.model_version, d.pd, d.score,
    f.arrived_at AS ingested_at,
    f.recorded_at AS validated_at,
    s.materialized_at AS scored_at,
    d.decided_at AS routed_at,
    bc.batch_id, b.queue AS batch_queue,
    b.created_at AS exported_at, b.due_at,
    v.verdict, v.reviewer_id, v.file_sha256 AS verdict_file_sha256,
    v.received_at AS verdict_received_at,
    e.action AS executed_action, e.decided_by, e.executed_at,
    f.run_id AS validation_run_id, d.run_id AS decision_run_id, b.run_id AS export_run_id,
    vf.run_id AS verdict_run_id, e.run_id AS execution_run_id
FROM decisions d
LEFT JOIN input_files f
    ON f.domain = d.domain AND f.partition_date = d.partition_date
    AND f.file_sha256 = d.source_sha256
LEFT JOIN stage_materializations s
    ON s.domain = d.domain AND s.run_id = d.run_id AND s.stage = 'risk_scores'
    AND s.partition_date = d.partition_date
LEFT JOIN review_batch_cases bc ON bc.domain = d.domain AND bc.case_id = d.case_id
LEFT JOIN review_batches b ON b.batch_id = bc.batch_id
LEFT JOIN verdicts v ON v.domain = d.domain AND v.case_id = d.case_id
LEFT JOIN verdict_files vf ON vf.file_sha256 = v.file_sha256
LEFT JOIN executions e ON e.domain = d.domain AND e.case_id = d.case_id;

-- The same, one row per case and stage reached, with the run that recorded the stage.
CREATE OR REPLACE VIEW case_stage_events AS
SELECT domain, case_id, partition_date, stage, stage_order, stage_at, run_id FROM (
    SELECT domain, case_id, partition_date, 'ingested' AS stage, 1 AS stage_order,
           ingested_at AS stage_at, validation_run_id AS run_id FROM case_stage_times
    UNION ALL
    SELECT domain, case_id, partition_date, 'validated', 2, validated_at, validation_run_id
    FROM case_stage_times
    UNION ALL
    SELECT domain, case_id, partition_date, 'scored', 3, scored_at, decision_run_id
    FROM case_stage_times
    UNION ALL
    SELECT domain, case_id, partition_date, 'routed', 4, routed_at, decision_run_id
    FROM case_stage_times
    UNION ALL
    SELECT domain, case_id, partition_date, 'exported', 5, exported_at, export_run_id
    FROM case_stage_times
    UNION ALL
    SELECT domain, case_id, partition_date, 'verdict_received', 6, verdict_received_at,
           verdict_run_id FROM case_stage_times
    UNION ALL
    SELECT domain, case_id, partition_date, 'executed', 7, executed_at, execution_run_id
    FROM case_stage_times
) WHERE stage_at IS NOT NULL;
