-- Model governance (issue 4): who moved which registry alias when, the training score
-- distribution each model version is checked against, and challenger scores kept in shadow.

CREATE TABLE IF NOT EXISTS model_promotions (
    model_name VARCHAR NOT NULL,
    alias VARCHAR NOT NULL,             -- champion | challenger
    from_version VARCHAR,               -- NULL when the alias was not set before
    to_version VARCHAR,                 -- NULL when the alias was removed
    promoted_by VARCHAR NOT NULL,       -- a person, or 'auto:first-training'
    reason VARCHAR,
    promoted_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model_name, alias, promoted_at)
);

-- Signed promotions (issue 17, docs/people.md): the model owner's key fingerprint, the signed
-- payload (domain, model, alias, version, time), the armored SSH signature and the payload's
-- SHA-256 (a signature counts once). NULL only for 'auto:first-training'.
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS signer_fingerprint VARCHAR;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS act_payload VARCHAR;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS signature VARCHAR;
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS payload_sha256 VARCHAR;

CREATE TABLE IF NOT EXISTS model_reference_bins (
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    bin INTEGER NOT NULL,               -- 1..n, ascending PD
    lower_pd DOUBLE,                    -- NULL: open below
    upper_pd DOUBLE,                    -- NULL: open above
    share DOUBLE NOT NULL,              -- share of training cases in the bin
    PRIMARY KEY (model_name, model_version, bin)
);

CREATE TABLE IF NOT EXISTS shadow_scores (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    model_name VARCHAR NOT NULL,
    champion_version VARCHAR NOT NULL,
    challenger_version VARCHAR NOT NULL,
    challenger_run_id VARCHAR NOT NULL,
    challenger_artifact_digest VARCHAR NOT NULL,
    champion_pd DOUBLE NOT NULL,
    challenger_pd DOUBLE NOT NULL,
    champion_band VARCHAR NOT NULL,
    challenger_band VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    scored_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, case_id)
);
