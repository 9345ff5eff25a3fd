-- The people registry (issue 17): an append-only log of signed acts. Who may act, with which
-- keys and roles, is the replay of this log (hitl_gate/identity/registry.py); nothing here is
-- ever updated or deleted. Each act's payload names the act before it (`previous`).
CREATE TABLE IF NOT EXISTS people_acts (
    seq BIGINT PRIMARY KEY,             -- 1, 2, ... in the order acts were accepted
    act_id VARCHAR NOT NULL UNIQUE,     -- SHA-256 of the canonical payload
    kind VARCHAR NOT NULL,              -- add_person | add_key | revoke_key | ...
    person_id VARCHAR NOT NULL,         -- whom the act is about
    payload VARCHAR NOT NULL,           -- canonical JSON, exactly the signed bytes
    signature VARCHAR NOT NULL,         -- armored SSH signature (namespace hitl-gate-people)
    signer_fingerprint VARCHAR NOT NULL,
    signer_id VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
