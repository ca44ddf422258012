-- taskloom schema, version 11 (PostgreSQL): the workflow version of each execution (taskloom.versioning).
-- NULL: no code has run it yet (queued by wf.start, a schedule, a parent or the server): the first worker
-- or process that takes it pins it to its workflow's version. '': the workflow has no version option.
-- Executions from before this migration were all run by code without versions: ''. Workers only claim
-- executions of the version their code has (or not pinned yet).
ALTER TABLE executions ADD COLUMN IF NOT EXISTS version TEXT;
UPDATE executions SET version = '' WHERE version IS NULL;
