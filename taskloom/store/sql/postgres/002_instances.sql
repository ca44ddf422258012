-- taskloom schema, version 2 (PostgreSQL): task instances run by workers for the remote backend.
-- Same tables and columns as the SQLite schema; JSON is kept as TEXT (written by taskloom, read back as is).

-- One row per client Session that started remote instances; last_seq numbers its updates, and locking
-- the row is what orders a session's updates by commit.
CREATE TABLE instance_sessions (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    last_seq     BIGINT NOT NULL DEFAULT 0,
    created_at   DOUBLE PRECISION NOT NULL
);

CREATE TABLE instances (
    id               TEXT PRIMARY KEY,
    -- queue order
    position         BIGSERIAL,
    session_id       TEXT NOT NULL REFERENCES instance_sessions (id),
    -- the task's name (max_parallel is counted per session and task name) and 'module:qualname' of its
    -- function, which a worker imports
    task             TEXT NOT NULL,
    target           TEXT NOT NULL,
    max_parallel     INTEGER NOT NULL,
    -- JSON: {"args": [...], "kwargs": {...}}
    arguments        TEXT NOT NULL,
    -- queued | running | completed | failed | cancelled
    status           TEXT NOT NULL,
    stop_requested   BOOLEAN NOT NULL DEFAULT FALSE,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    -- JSON view of the return value (completed), or {"type", "module", "message"} (failed)
    result           TEXT,
    error            TEXT,
    -- how many times a worker claimed it (more than 1: a worker died and it ran again)
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at DOUBLE PRECISION,
    created_at       DOUBLE PRECISION NOT NULL,
    started_at       DOUBLE PRECISION,
    finished_at      DOUBLE PRECISION
);
CREATE INDEX instances_queued ON instances (position) WHERE status = 'queued';
CREATE INDEX instances_by_session ON instances (session_id, task, status);
CREATE INDEX instances_by_owner ON instances (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX instances_leased ON instances (lease_expires_at) WHERE status = 'running';

-- What a session's client follows live: running, progress, status, log, and the outcome of each instance.
-- seq counts per session, taken under the session row's lock, so a reader never skips a later commit.
CREATE TABLE instance_updates (
    session_id   TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    instance_id  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    data         TEXT NOT NULL,
    ts           DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_id, seq)
);
