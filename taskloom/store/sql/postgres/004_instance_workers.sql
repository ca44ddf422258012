-- taskloom schema, version 4 (PostgreSQL): which task targets the running instance workers serve.
-- A worker writes one row per target it imported when it starts and again with every heartbeat, and
-- deletes them when it stops; POST /instances refuses a target no worker has been seen serving lately,
-- instead of queueing an instance that nothing will ever run.
CREATE TABLE instance_workers (
    worker_id  TEXT NOT NULL,
    -- 'module:qualname' of a task's function, as in instances.target
    target     TEXT NOT NULL,
    -- seconds since the epoch of the worker's last heartbeat
    last_seen  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (target, worker_id)
);
CREATE INDEX instance_workers_by_worker ON instance_workers (worker_id);
