-- taskloom schema, version 15 (PostgreSQL): a durable step written as one row.
-- start_value: a step's start and outcome written together are one row (the outcome's), holding the
-- start's value here (an empty value when it had none); NULL on every other row. Readers expand such a
-- row into both events (taskloom.store.base.merge_steps and decode_events); rows written before stay two.
-- A column added with no default changes no existing row (no table rewrite), and on partitioned events
-- (taskloom.store.partitions) it reaches every partition.
ALTER TABLE events ADD COLUMN IF NOT EXISTS start_value BYTEA;
