-- taskloom schema, version 14: indexes for retention (taskloom.retention). Pruning finds finished
-- executions by status and last change, and removes each one's messages (the existing message indexes
-- cover unread messages only).
CREATE INDEX IF NOT EXISTS executions_by_status_updated ON executions (status, updated_at);
CREATE INDEX IF NOT EXISTS messages_by_execution ON messages (execution_id);
