-- taskloom schema, version 12 (PostgreSQL): the deadline of an execution of a workflow with a timeout
-- (`@workflow(timeout=seconds)`, taskloom.deadlines): created_at + timeout, fixed once by the first run or
-- worker that sees the execution and never moved after (a deploy with another timeout keeps it). NULL: none.
ALTER TABLE executions ADD COLUMN IF NOT EXISTS deadline DOUBLE PRECISION;
-- the workers' sweep: unfinished executions past their deadline
CREATE INDEX IF NOT EXISTS executions_by_deadline ON executions (deadline)
    WHERE deadline IS NOT NULL AND status IN ('queued', 'running', 'paused');
