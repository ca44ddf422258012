-- taskloom schema, version 10 (SQLite): queues, priorities and limits (taskloom.queues).
-- Every execution belongs to one queue ('default' unless started with queue=NAME) and has a priority
-- (lower runs first); claimed_at is when a worker last claimed it, the durable record of a start.
-- (SQLite has no ADD COLUMN IF NOT EXISTS: a store whose version rows were removed by hand skips the
-- column it has, see _migrate.)
ALTER TABLE executions ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE executions ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN claimed_at REAL;
-- the claim: the due executions of a queue, best priority then oldest first; also the running count
CREATE INDEX IF NOT EXISTS executions_by_queue ON executions (queue, status, priority, created_at);
-- One row per declared queue, written by the workers (and starts) whose code declares it; NULL: no limit.
CREATE TABLE IF NOT EXISTS queues (
    name               TEXT PRIMARY KEY,
    concurrency        INTEGER,
    worker_concurrency INTEGER,
    rate_count         INTEGER,
    rate_seconds       REAL,
    updated_at         REAL NOT NULL
);
-- The claims of rate-limited queues within their window (older rows are deleted by the next claim).
CREATE TABLE IF NOT EXISTS queue_starts (
    queue      TEXT NOT NULL,
    started_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_starts_by_time ON queue_starts (queue, started_at);
