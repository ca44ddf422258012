-- taskloom schema, version 17 (PostgreSQL; 16 on SQLite): a message's idempotency key
-- (taskloom.send(..., idempotency_key=...)). A
-- send whose key the execution already has stores nothing and answers the first one's seq, so neither a
-- caller retrying a send it is not sure arrived, nor the store retrying a write whose commit it did not
-- hear back from (a dropped connection), delivers one message twice. send() gives every call a key of its
-- own when the caller gives none. Messages sent before this version have none.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS idempotency_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_key ON messages (execution_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
