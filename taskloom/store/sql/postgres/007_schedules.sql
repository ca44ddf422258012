-- taskloom schema, version 7 (PostgreSQL): schedules (`@workflow(schedule=...)`, `wf.schedule(...)`).
-- One row per schedule, by name. Each tick of a schedule starts one execution whose id derives from the
-- name and the tick (taskloom.schedule_ticks.tick_execution_id), so the executions table's primary key
-- is what makes a tick start once; last_tick only says where the next look starts, and is advanced
-- with a compare-and-set after the tick's execution exists (taskloom.schedules).
-- IF NOT EXISTS: a store whose version row was removed by hand migrates again without failing here.
CREATE TABLE IF NOT EXISTS schedules (
    name        TEXT PRIMARY KEY,
    -- the workflow's name and its 'module:qualname', as executions record them
    workflow    TEXT NOT NULL,
    target      TEXT,
    -- five fields, or six with seconds first (cronsim), in the IANA time zone below
    cron        TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    -- the input of every execution it starts, pickled like every stored value (taskloom.serde)
    input       BYTEA,
    -- 'latest', 'all' or 'none': what to do with ticks that fell while nothing ran
    catchup     TEXT NOT NULL,
    paused      BOOLEAN NOT NULL DEFAULT FALSE,
    -- seconds since the epoch: every tick up to this one has been handled (started, or skipped)
    last_tick   DOUBLE PRECISION NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_by_workflow ON schedules (workflow);
