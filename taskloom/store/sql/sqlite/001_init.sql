-- taskloom schema, version 1 (SQLite). Applied once, inside one BEGIN IMMEDIATE transaction.
CREATE TABLE executions (
    id           TEXT PRIMARY KEY,
    workflow     TEXT NOT NULL,
    -- 'module:qualname' of the workflow function, so the CLI and workers can import it to resume
    target       TEXT,
    status       TEXT NOT NULL,
    input        BLOB,
    output       BLOB,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    -- set while a worker holds the execution; NULL when it is free to claim
    lease_owner  TEXT,
    lease_expires_at REAL,
    -- a paused or sleeping execution wakes by itself at this time (durable timers, pause deadlines)
    wake_at      REAL,
    queued       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX executions_by_status ON executions (status, created_at);
CREATE INDEX executions_by_workflow ON executions (workflow, created_at);

CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL REFERENCES executions (id),
    type         TEXT NOT NULL,
    step_id      TEXT,
    name         TEXT,
    value        BLOB,
    data         TEXT,
    ts           REAL NOT NULL
);
CREATE INDEX events_by_execution ON events (execution_id, seq);

CREATE TABLE secrets (
    name         TEXT PRIMARY KEY,
    ciphertext   BLOB NOT NULL,
    updated_at   REAL NOT NULL
);
