-- Four-eyes cases go to two different people in two batches (issue 17): the first batch holds
-- them in `review_batch_cases` (one row per case); the blind second batch holds the same cases
-- here, with the first batch they pair with. The second reviewer's files never name the first
-- batch or its assignee; only the pipeline joins the two opinions.
CREATE TABLE IF NOT EXISTS review_second_opinion_cases (
    batch_id VARCHAR NOT NULL,          -- the second-opinion (slot 2) batch
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    first_batch_id VARCHAR NOT NULL,    -- the slot-1 batch holding the same case
    PRIMARY KEY (batch_id, case_id)
);
