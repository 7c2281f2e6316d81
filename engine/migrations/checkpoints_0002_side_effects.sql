-- The side-effect outbox: each outside call a task makes (an email, a text, a charge), keyed
-- by the task's idempotency key and the call's number, recorded before it is sent and again
-- with its result once sent, so a resumed task returns the result instead of sending again.
CREATE TABLE IF NOT EXISTS brainops_side_effects (
    thread_id     text NOT NULL,
    effect_key    text NOT NULL,
    status        text NOT NULL,
    result        json,
    updated_at_ms bigint NOT NULL,
    PRIMARY KEY (thread_id, effect_key)
);
