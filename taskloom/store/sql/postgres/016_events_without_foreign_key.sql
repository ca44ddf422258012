-- taskloom schema, version 16 (PostgreSQL): events without the foreign key to executions.
-- The key cost every step's write a second query on executions (the key check, run as a trigger at the
-- end of the INSERT: 13 us of a 52 us statement on the server, measured with EXPLAIN ANALYZE), on the
-- row the write has just locked. Integrity holds without it: every write of events reads the execution's
-- row first, in its own statement or transaction (the fenced INSERT ... SELECT from the row locked FOR NO
-- KEY UPDATE, or the transaction that locks or updates it and raises ExecutionNotFoundError when it is
-- missing), and an execution is only ever deleted by retention, finished (no write passes a fence on a
-- finished execution), after its events and only when none is left (taskloom.retention).
-- The constraint is dropped whatever its name: a store partitioned by taskloom.store.partitions has it
-- under another one (events_execution_id_fkey1), and on a partitioned table dropping it drops it from
-- every partition.
DO $$
DECLARE
    key_name TEXT;
BEGIN
    FOR key_name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'events'::regclass AND contype = 'f' AND confrelid = 'executions'::regclass
    LOOP
        EXECUTE format('ALTER TABLE events DROP CONSTRAINT %I', key_name);
    END LOOP;
END
$$;
