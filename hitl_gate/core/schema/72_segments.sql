-- Per-run segments under globally signed checkpoints (hitl_gate/audit/run_segments.py,
-- docs/audit.md "Room to grow"). A leaf is one segment checkpoint folded into the global log;
-- a global checkpoint signs the Merkle root of every leaf so far, linked to the one before.
CREATE TABLE IF NOT EXISTS audit_segment_leaves (
    leaf_seq BIGINT PRIMARY KEY,
    segment_id VARCHAR NOT NULL,
    last_seq BIGINT NOT NULL,        -- the segment checkpoint's last entry
    head_hash VARCHAR NOT NULL,
    merkle_root VARCHAR NOT NULL,
    signature VARCHAR NOT NULL,      -- the segment checkpoint's signature
    leaf_hash VARCHAR NOT NULL,      -- SHA-256 of the canonical leaf
    UNIQUE (segment_id, last_seq)
);

CREATE TABLE IF NOT EXISTS audit_global_checkpoints (
    global_seq BIGINT PRIMARY KEY,
    leaves BIGINT NOT NULL,          -- leaves 1..leaves under this checkpoint
    tree_root VARCHAR NOT NULL,
    previous_hash VARCHAR NOT NULL,  -- hash of the previous global checkpoint (genesis: zeros)
    created_at VARCHAR NOT NULL,
    public_key VARCHAR NOT NULL,
    signature VARCHAR NOT NULL
);
