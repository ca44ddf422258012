-- taskloom schema, version 6 (SQLite): the executions list, newest first, without a filter (the
-- dashboard's first page, `taskloom list`) reads this index from the top instead of sorting the table.
-- IF NOT EXISTS: a store whose version row was removed by hand migrates again without failing here.
CREATE INDEX IF NOT EXISTS executions_by_created ON executions (created_at);
