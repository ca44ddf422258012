-- taskloom schema, version 15 (SQLite): a durable step written as one row.
-- start_value: a step's start and outcome written together are one row (the outcome's), holding the
-- start's value here (an empty blob when it had none); NULL on every other row. Readers expand such a row
-- into both events (taskloom.store.base.merge_steps and decode_events); rows written before stay two.
-- (SQLite has no ADD COLUMN IF NOT EXISTS: a store whose version rows were removed by hand skips the
-- column it has, see _migrate.)
ALTER TABLE events ADD COLUMN start_value BLOB;
