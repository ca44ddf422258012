-- taskloom schema, version 9 (SQLite): the parent of a child execution (`await other(input)` inside a
-- workflow, taskloom.children), NULL for a top-level one: shown by `taskloom list` and the HTTP API, and
-- indexed for finding the children of an execution. (SQLite has no ADD
-- COLUMN IF NOT EXISTS: a store whose version rows were removed by hand skips the column it has, see _migrate.)
ALTER TABLE executions ADD COLUMN parent_id TEXT;
CREATE INDEX IF NOT EXISTS executions_by_parent ON executions (parent_id) WHERE parent_id IS NOT NULL;
