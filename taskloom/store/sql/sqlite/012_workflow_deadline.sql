-- taskloom schema, version 12 (SQLite): the deadline of an execution of a workflow with a timeout
-- (`@workflow(timeout=seconds)`, taskloom.deadlines): created_at + timeout, fixed once by the first run or
-- worker that sees the execution and never moved after (a deploy with another timeout keeps it). NULL: none.
-- (SQLite has no ADD COLUMN IF NOT EXISTS: a store whose version rows were removed by hand skips the
-- column it has, see _migrate.)
ALTER TABLE executions ADD COLUMN deadline REAL;
-- the workers' sweep: a workflow's unfinished executions past their deadline, and the next deadline ahead
CREATE INDEX IF NOT EXISTS executions_by_deadline ON executions (workflow, deadline)
    WHERE deadline IS NOT NULL AND status IN ('queued', 'running', 'paused');
-- the sweep's first statement: the unfinished executions of a workflow with a timeout that have no deadline yet
CREATE INDEX IF NOT EXISTS executions_without_deadline ON executions (workflow)
    WHERE deadline IS NULL AND status IN ('queued', 'running', 'paused');
