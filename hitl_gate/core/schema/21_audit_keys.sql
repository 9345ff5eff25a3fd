-- Checkpoint key hand-overs (docs/key_custody.md, "Rotation"): the key that signed the
-- checkpoints up to `after_seq` names the key that signs those after it. `old_signature` (by
-- the old key) makes the hand-over an act of the old key's holder; `new_signature` (by the new
-- key) proves the new key exists in a token. `hitl audit verify` follows these from the pinned
-- key; a copy of each is written beside the checkpoints (`key-handover-<after_seq>.json`).
CREATE TABLE IF NOT EXISTS audit_key_handovers (
    after_seq BIGINT PRIMARY KEY,
    old_public_key VARCHAR NOT NULL,
    new_public_key VARCHAR NOT NULL,
    created_at VARCHAR NOT NULL,
    old_signature VARCHAR NOT NULL,
    new_signature VARCHAR NOT NULL
);
