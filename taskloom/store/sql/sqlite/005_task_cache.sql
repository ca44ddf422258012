-- taskloom schema, version 5 (SQLite): results of tasks declared with cache=True (Flux's option).
-- One row per task name and argument hash; a later call with equal arguments returns the stored value
-- instead of running the task again, in any process and any execution, until the row expires or is
-- cleared (`taskloom cache clear [TASK]`, `my_task.clear_cache()`).
CREATE TABLE task_cache (
    task        TEXT NOT NULL,
    -- sha256 (hex) of the call's arguments in canonical form (taskloom.cache.argument_key)
    key         TEXT NOT NULL,
    -- the result, pickled like every stored value (taskloom.serde)
    value       BLOB NOT NULL,
    created_at  REAL NOT NULL,
    -- seconds since the epoch after which the row is no longer used; NULL: until cleared
    expires_at  REAL,
    PRIMARY KEY (task, key)
) WITHOUT ROWID;
