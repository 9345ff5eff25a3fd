-- Gold cases (issue 22): past cases with a known right answer, seeded into review batches under
-- a case id of the same shape as the real ones, to measure reviewers' accuracy. Membership is
-- kept here only (never in a batch file or manifest field of its own) and sealed
-- (audit/events.py, insert-once): execution refuses every case id listed here, whatever
-- `verdicts` says (execution/execute.py), and intake never makes a gold case final.
CREATE TABLE IF NOT EXISTS review_gold_cases (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,           -- the id shown in the batch (never a real case's id)
    source_case_id VARCHAR NOT NULL,    -- the past case it was made from
    expected_verdict VARCHAR NOT NULL,  -- the known right answer
    basis VARCHAR NOT NULL,             -- outcome | declared
    queue VARCHAR NOT NULL,
    partition_date DATE NOT NULL,       -- the day whose batches it was seeded into
    seeded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, case_id)
);

-- A declared gold set: past cases whose right answer a named person vouched for.
CREATE TABLE IF NOT EXISTS review_gold_declared (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,           -- a real, decided past case
    expected_verdict VARCHAR NOT NULL,
    declared_by VARCHAR NOT NULL,
    declared_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, case_id)
);
