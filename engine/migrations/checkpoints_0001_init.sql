-- Threads, checkpoints, channel values per (channel, version) and pending task writes.
CREATE TABLE IF NOT EXISTS brainops_threads (
    thread_id      text PRIMARY KEY,
    graph          text NOT NULL,
    status         text NOT NULL,
    head           bigint,
    interrupt      json,
    error          text,
    owner          text,
    lease_until_ms bigint,
    created_at_ms  bigint NOT NULL,
    updated_at_ms  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS brainops_threads_updated ON brainops_threads (updated_at_ms);

CREATE TABLE IF NOT EXISTS brainops_checkpoints (
    thread_id     text NOT NULL,
    checkpoint_id bigint NOT NULL,
    parent_id     bigint,
    step          bigint NOT NULL,
    source        text NOT NULL,
    nodes         json NOT NULL,
    next          json NOT NULL,
    joins         json NOT NULL,
    is_snapshot   boolean NOT NULL,
    bytes         integer NOT NULL,
    created_at_ms bigint NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_id)
);

-- One row per channel changed by a checkpoint; the checkpoint id is the channel's version.
-- op: 'set' (the new value), 'reduce' (a JSON array of writes to fold in order),
-- 'snapshot' (the full value, in a checkpoint that stores every channel).
-- Values are `json`, not `jsonb`: stored as written (object key order kept), and cheaper to
-- insert, since the checkpointer never queries inside them.
CREATE TABLE IF NOT EXISTS brainops_channel_values (
    thread_id     text NOT NULL,
    checkpoint_id bigint NOT NULL,
    channel       text NOT NULL,
    seq           integer NOT NULL,
    op            text NOT NULL,
    value         json NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_id, channel)
);

CREATE TABLE IF NOT EXISTS brainops_writes (
    thread_id     text NOT NULL,
    checkpoint_id bigint NOT NULL,
    task_id       text NOT NULL,
    node          text NOT NULL,
    writes        json NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_id, task_id)
);
