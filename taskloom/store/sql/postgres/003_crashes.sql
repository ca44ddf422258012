-- taskloom schema, version 3 (PostgreSQL): how many times a holder of an execution died while running it
-- (a worker or an embedded run killed, a task that exited the process), so a workflow that takes every
-- process down with it can be failed after max_recovery_attempts instead of crashing workers forever.
ALTER TABLE executions ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
