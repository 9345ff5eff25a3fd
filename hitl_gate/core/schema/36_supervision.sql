-- Supervision of review (issue 22): expiry defaults applied and reminders sent. Documented in
-- docs/review.md ("Supervision"). Both are sealed (audit/events.py): what the sweep did on
-- expiry, under which configured default, and which reminder went to whom, once.

-- Each case whose batch passed its due time without a final verdict, and what the queue's
-- configured expiry default did with it: `escalate` (to the queue's escalation queue) or
-- `hold` (kept, never executed, for the named role). Never an automatic approval.
CREATE TABLE IF NOT EXISTS review_expiry_actions (
    domain VARCHAR NOT NULL,
    case_id VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    queue VARCHAR NOT NULL,
    action VARCHAR NOT NULL,            -- escalate | hold
    hold_for_role VARCHAR,              -- the role a held case waits for
    escalate_to VARCHAR,                -- the queue an escalated case goes to (NULL: none set)
    settings_digest VARCHAR NOT NULL,   -- the queue settings in force (sha256 of their JSON)
    acted_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, batch_id, case_id)   -- a case expires once per batch
);

-- Reminders before a due time: one per (batch, assignee, kind), recorded before it is sent.
CREATE TABLE IF NOT EXISTS review_reminders (
    reminder_id VARCHAR PRIMARY KEY,    -- <kind>:<batch_id>:<assignee_id>
    domain VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    assignee_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,              -- due_soon
    open_cases INTEGER NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    channel VARCHAR NOT NULL,           -- file | smtp
    recorded_at TIMESTAMPTZ NOT NULL
);
