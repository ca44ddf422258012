-- taskloom schema, version 10 (PostgreSQL): queues, priorities and limits (taskloom.queues).
-- Every execution belongs to one queue ('default' unless started with queue=NAME) and has a priority
-- (lower runs first); claimed_at is when a worker last claimed it, the durable record of a start.
ALTER TABLE executions ADD COLUMN IF NOT EXISTS queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE executions ADD COLUMN IF NOT EXISTS priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN IF NOT EXISTS claimed_at DOUBLE PRECISION;
-- the claim: the due executions of a queue, best priority then oldest first; also the running count
CREATE INDEX IF NOT EXISTS executions_by_queue ON executions (queue, status, priority, created_at);
-- One row per declared queue, written by the workers (and starts) whose code declares it; NULL: no limit.
-- A claim from a limited queue locks its row (SELECT ... FOR UPDATE), so the counts it makes are exact
-- across workers: claims of one limited queue take turns, those of other queues do not wait.
CREATE TABLE IF NOT EXISTS queues (
    name               TEXT PRIMARY KEY,
    concurrency        INTEGER,
    worker_concurrency INTEGER,
    rate_count         INTEGER,
    rate_seconds       DOUBLE PRECISION,
    updated_at         DOUBLE PRECISION NOT NULL
);
-- The claims of rate-limited queues within their window (older rows are deleted by the next claim).
CREATE TABLE IF NOT EXISTS queue_starts (
    queue      TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_starts_by_time ON queue_starts (queue, started_at);
