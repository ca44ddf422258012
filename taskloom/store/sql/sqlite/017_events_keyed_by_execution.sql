-- taskloom schema, version 17 (SQLite): an execution's events are a range of seqs of their own, and
-- events lose their index and their foreign key.
-- Each execution gets a number (executions.number, unique, never changed: VACUUM may renumber an implicit
-- rowid, so it is a column of its own), and its events take the seqs number * 2^24 + 1, + 2, ... in order.
-- Reading an execution's events is then a range of the table's own key, so the table needs no second
-- B-tree (the (execution_id, seq) index): a step's write changes one page instead of two, which was a
-- third of its cost. The foreign key goes with it, as on PostgreSQL (its 016): the fenced insert reads the
-- execution's row anyway, and without an index a delete from executions would have to read every event.
-- 2^24 seqs per execution (16,777,215 rows: a step's start and outcome share one) keep every seq below
-- 2^53 for 2^29 executions, so a seq stays exact as a JSON number in the dashboard. The CHECK refuses the
-- seq that would leave the range (its low 24 bits all zero) rather than let it fall into the next one.
-- Existing events are renumbered in their order; seqs were only ever compared within one execution (the
-- cursors of load_events, the CLI and the dashboard), and a cursor taken before this migration is stale
-- (it shows events again, loses none). Events whose execution is gone (none: the foreign key prevented
-- them) would be left behind by the join.
ALTER TABLE executions ADD COLUMN number INTEGER;
UPDATE executions SET number = rowid;
CREATE UNIQUE INDEX IF NOT EXISTS executions_by_number ON executions (number);
CREATE TABLE events_keyed (
    seq          INTEGER PRIMARY KEY CHECK ((seq & 16777215) <> 0),
    execution_id TEXT NOT NULL,
    type         TEXT NOT NULL,
    step_id      TEXT,
    name         TEXT,
    value        BLOB,
    data         TEXT,
    ts           REAL NOT NULL,
    start_value  BLOB
);
INSERT INTO events_keyed (seq, execution_id, type, step_id, name, value, data, ts, start_value)
    SELECT (x.number << 24) + row_number() OVER (PARTITION BY e.execution_id ORDER BY e.seq),
           e.execution_id, e.type, e.step_id, e.name, e.value, e.data, e.ts, e.start_value
    FROM events e JOIN executions x ON x.id = e.execution_id
    ORDER BY 1;
DROP TABLE events;
ALTER TABLE events_keyed RENAME TO events;
