-- taskloom schema, version 8 (PostgreSQL): messages sent to executions (taskloom.send), kept until a
-- `receive` of their topic takes them. seq orders the messages of a topic (oldest first); received_step is
-- the id of the receive step that took the message, NULL while it is unread. The unique index makes a
-- step take at most one message, whatever happens: the take and the step's outcome are one transaction.
CREATE TABLE IF NOT EXISTS messages (
    seq           BIGSERIAL PRIMARY KEY,
    execution_id  TEXT NOT NULL REFERENCES executions (id),
    topic         TEXT NOT NULL,
    value         BYTEA,
    sent_at       DOUBLE PRECISION NOT NULL,
    received_step TEXT,
    received_at   DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS messages_unread ON messages (execution_id, topic, seq) WHERE received_step IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_step ON messages (execution_id, received_step)
    WHERE received_step IS NOT NULL;
