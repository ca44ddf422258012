-- taskloom schema, version 15 (SQLite): a durable step written as one row, and events without AUTOINCREMENT.
-- start_value: a step's start and outcome written together are one row (the outcome's), holding the
-- start's value here (an empty blob when it had none); NULL on every other row. Readers expand such a row
-- into both events (taskloom.store.base.merge_steps and decode_events); rows written before stay two.
-- The table is rebuilt as `seq INTEGER PRIMARY KEY`: AUTOINCREMENT costs every insert a read and a write
-- of sqlite_sequence (a third of a step's write). Without it SQLite takes max(seq) + 1, so a seq may be
-- taken again once the newest rows are deleted (retention): harmless, because seqs are only ever
-- compared within one execution (load_events' after_seq, the CLI's and dashboard's cursors), and an
-- execution's own rows are never deleted while it can still be written to, so its new rows always get
-- seqs above its old ones. Every row keeps its seq. The rebuild runs in the migration's transaction
-- (BEGIN IMMEDIATE, see SQLiteStore._migrate), with foreign keys enforced (the pragma cannot change
-- inside a transaction): the copy checks each row's execution as any insert does, so a store damaged by
-- hand (an event whose execution is gone) fails here and stays at version 14, untouched. No table
-- references events, so the drop and the rename change no other table.
-- (ADD COLUMN first: a store whose version rows were removed by hand runs this again, keeping its
-- start_value; _migrate skips the duplicate column.)
ALTER TABLE events ADD COLUMN start_value BLOB;
CREATE TABLE events_rebuilt (
    seq          INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL REFERENCES executions (id),
    type         TEXT NOT NULL,
    step_id      TEXT,
    name         TEXT,
    value        BLOB,
    data         TEXT,
    ts           REAL NOT NULL,
    start_value  BLOB
);
INSERT INTO events_rebuilt (seq, execution_id, type, step_id, name, value, data, ts, start_value)
    SELECT seq, execution_id, type, step_id, name, value, data, ts, start_value FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_rebuilt RENAME TO events;
CREATE INDEX events_by_execution ON events (execution_id, seq);
