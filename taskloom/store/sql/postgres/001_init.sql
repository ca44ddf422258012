-- taskloom schema, version 1 (PostgreSQL). Applied once, in one transaction, under an advisory lock.
-- Same tables and columns as the SQLite schema: BYTEA for encoded values, DOUBLE PRECISION for Unix
-- timestamps. events.data stays TEXT (JSON written by the store), not JSONB, so every value SQLite
-- accepts is accepted here too (JSONB rejects NaN and \u0000) and it reads back byte for byte.
CREATE TABLE executions (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    -- 'module:qualname' of the workflow function, so the CLI and workers can import it to resume
    target           TEXT,
    status           TEXT NOT NULL,
    input            BYTEA,
    output           BYTEA,
    created_at       DOUBLE PRECISION NOT NULL,
    updated_at       DOUBLE PRECISION NOT NULL,
    -- set while a worker holds the execution; NULL when it is free to claim
    lease_owner      TEXT,
    lease_expires_at DOUBLE PRECISION,
    -- a paused or sleeping execution wakes by itself at this time (durable timers, pause deadlines)
    wake_at          DOUBLE PRECISION,
    queued           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX executions_by_status ON executions (status, created_at);
CREATE INDEX executions_by_workflow ON executions (workflow, created_at);

CREATE TABLE events (
    seq          BIGSERIAL PRIMARY KEY,
    execution_id TEXT NOT NULL REFERENCES executions (id),
    type         TEXT NOT NULL,
    step_id      TEXT,
    name         TEXT,
    value        BYTEA,
    data         TEXT,
    ts           DOUBLE PRECISION NOT NULL
);
CREATE INDEX events_by_execution ON events (execution_id, seq);

CREATE TABLE secrets (
    name         TEXT PRIMARY KEY,
    ciphertext   BYTEA NOT NULL,
    updated_at   DOUBLE PRECISION NOT NULL
);
