-- taskloom schema, version 14: indexes for retention (taskloom.retention) and for history at scale.
-- Pruning finds finished executions by status and last change, and removes each one's messages (the
-- existing message indexes cover unread messages only). A listing filtered by workflow and status
-- together (the dashboard, `taskloom list`) reads only matching rows, however rare the pair.
CREATE INDEX IF NOT EXISTS executions_by_status_updated ON executions (status, updated_at);
CREATE INDEX IF NOT EXISTS messages_by_execution ON messages (execution_id);
CREATE INDEX IF NOT EXISTS executions_by_workflow_status ON executions (workflow, status, created_at);
