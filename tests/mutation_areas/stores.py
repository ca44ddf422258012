"""Mutation testing of the stores (issue 14): the tests that exercise each store module, and the mutants
no test can tell apart from the original, each with the reason. Merged into ``tests/mutate.py``.

Run one module with ``.venv/bin/python tests/mutate.py taskloom/store/sqlite.py --jobs 1``.
"""

from __future__ import annotations

_STORE_TESTS = [
    "tests/store/test_store_contract.py",
    "tests/store/test_store_faults.py",
    "tests/store/test_instance_workers.py",
]
#: the store methods of newer features, tested by their own suites (on both stores)
_FEATURE_TESTS = [
    "tests/unit/test_messages.py",
    "tests/store/test_task_cache_store.py",
    "tests/schedules/test_schedule_store.py",
]

#: module path prefix -> the test files that exercise it (tried before tests/mutate.py's own map)
TESTS: dict[str, list[str]] = {
    "taskloom/store/sqlite.py": [
        *_STORE_TESTS,
        *_FEATURE_TESTS,
        "tests/store/test_mutants_sqlite.py",
        "tests/store/test_mutants_sqlite_wal_fence.py",
    ],
    "taskloom/store/faults.py": [
        *_STORE_TESTS,
        "tests/store/test_mutants_sqlite.py",
        "tests/store/test_mutants_faults.py",
    ],
    "taskloom/store/base.py": [*_STORE_TESTS, "tests/store/test_mutants_base.py"],
    "taskloom/store/instances.py": [
        *_STORE_TESTS,
        "tests/store/test_mutants_instances.py",
        "tests/store/test_mutants_instances_pg.py",
        "tests/store/test_session_list.py",
    ],
    "taskloom/store/postgres.py": [
        *_STORE_TESTS,
        *_FEATURE_TESTS,
        "tests/store/test_mutants_postgres.py",
        "tests/store/test_mutants_postgres_store.py",
        "tests/store/test_pg_paused_transaction.py",
    ],
}

#: module path prefix -> pytest marker expression ("" for none; tests/mutate.py's default is "not postgres").
#: The PostgreSQL store and the instance queue's PostgreSQL half are only run by the PostgreSQL tests.
MARKERS: dict[str, str] = {
    "taskloom/store/postgres.py": "",
    "taskloom/store/instances.py": "",
}

_SQL_CASE = (
    "SQLite reads keywords, pragma names and values, and table and column names in any case; the names "
    "and string literals that are data ('table', 'executions', 'wal' as returned) are unchanged"
)

_SQLITE = "taskloom.store.sqlite.xǁSQLiteStoreǁ"

#: mutmut's mutant name -> (the mutated line, stripped, as ``mutmut show`` prints it after "+", the reason)
EQUIVALENT: dict[str, tuple[str, str]] = {
    # -- taskloom/store/sqlite.py: SQL in another case ---------------------------------------------------
    f"{_SQLITE}_conn__mutmut_29": ('conn.execute("pragma synchronous = normal")', _SQL_CASE),
    f"{_SQLITE}_conn__mutmut_30": ('conn.execute("PRAGMA SYNCHRONOUS = NORMAL")', _SQL_CASE),
    f"{_SQLITE}_conn__mutmut_33": ('conn.execute("pragma foreign_keys = on")', _SQL_CASE),
    f"{_SQLITE}_conn__mutmut_34": ('conn.execute("PRAGMA FOREIGN_KEYS = ON")', _SQL_CASE),
    f"{_SQLITE}_enable_wal__mutmut_6": (
        'if conn.execute("pragma journal_mode").fetchone()[0] != "wal":',
        _SQL_CASE,
    ),
    f"{_SQLITE}_enable_wal__mutmut_7": (
        'if conn.execute("PRAGMA JOURNAL_MODE").fetchone()[0] != "wal":',
        _SQL_CASE,
    ),
    f"{_SQLITE}_enable_wal__mutmut_14": ('conn.execute("pragma journal_mode = wal")', _SQL_CASE),
    f"{_SQLITE}_enable_wal__mutmut_15": ('conn.execute("PRAGMA JOURNAL_MODE = WAL")', _SQL_CASE),
    f"{_SQLITE}_migrate__mutmut_11": ('conn.execute("begin immediate")', _SQL_CASE),
    f"{_SQLITE}_migrate__mutmut_14": (
        'conn.execute("create table if not exists schema_version (version integer not null)")',
        _SQL_CASE,
    ),
    f"{_SQLITE}_migrate__mutmut_19": (
        'row = conn.execute("select max(version) from schema_version").fetchone()',
        _SQL_CASE,
    ),
    f"{_SQLITE}_migrate__mutmut_20": (
        'row = conn.execute("SELECT MAX(VERSION) FROM SCHEMA_VERSION").fetchone()',
        _SQL_CASE,
    ),
    f"{_SQLITE}_migrate__mutmut_33": (
        "and conn.execute(\"select 1 from sqlite_master where type = 'table' and name = 'executions'\").fetchone()",
        _SQL_CASE,
    ),
    f"{_SQLITE}_migrate__mutmut_47": (
        'conn.execute("insert into schema_version (version) values (?)", (version,))',
        _SQL_CASE,
    ),
    f"{_SQLITE}_migrate__mutmut_48": (
        'conn.execute("INSERT INTO SCHEMA_VERSION (VERSION) VALUES (?)", (version,))',
        _SQL_CASE + " (an INSERT names an existing table; only CREATE TABLE stores the spelling, see _migrate 15)",
    ),
    f"{_SQLITE}_migrate__mutmut_51": ('conn.execute("commit")', _SQL_CASE),
    f"{_SQLITE}_rollback__mutmut_3": ('conn.execute("rollback")', _SQL_CASE),
    f"{_SQLITE}_check_fence__mutmut_7": (
        'found = conn.execute("select status, lease_owner from executions where id = ?", (execution_id,)).fetchone()',
        _SQL_CASE,
    ),
    f"{_SQLITE}_check_fence__mutmut_8": (
        'found = conn.execute("SELECT STATUS, LEASE_OWNER FROM EXECUTIONS WHERE ID = ?", (execution_id,)).fetchone()',
        _SQL_CASE,
    ),
    # -- taskloom/store/sqlite.py: the rest --------------------------------------------------------------
    "taskloom.store.sqlite.xǁSQLiteFaultsǁclassify__mutmut_1": (
        'return Fault(None, f"{error.strerror or error}: check that its folder can be created and written")',
        "Fault.transient is only ever tested for truth (`if not fault.transient`, `... if fault.transient "
        "else ...`), and None is false like False",
    ),
    f"{_SQLITE}_conn__mutmut_17": (
        "conn = sqlite3.connect(self.path, check_same_thread=False, timeout=self.busy_timeout)",
        "isolation_level only decides whether the sqlite3 module opens a transaction by itself before an "
        "INSERT, UPDATE or DELETE run outside one; every such statement of the SQLite store and its instance "
        "queue runs inside an explicit BEGIN [IMMEDIATE] ... COMMIT, where the module adds nothing",
    ),
    f"{_SQLITE}_conn__mutmut_19": (
        "conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, )",
        "connect's timeout is the busy timeout until the next statement, `PRAGMA busy_timeout = ...`, sets it "
        "again from the same setting; nothing between the two touches the file (connect opens it lazily)",
    ),
    f"{_SQLITE}_enable_wal__mutmut_10": (
        'if conn.execute("PRAGMA journal_mode").fetchone()[0] != "XXwalXX":',
        "always issuing `PRAGMA journal_mode = WAL`: on a file already in WAL mode it is a no-op that takes no "
        "lock (it answers 'wal' at once even while another process holds the write lock), and on any other "
        "file the original issues it too",
    ),
    f"{_SQLITE}_enable_wal__mutmut_11": (
        'if conn.execute("PRAGMA journal_mode").fetchone()[0] != "WAL":',
        "SQLite answers the journal mode in lower case, so this always issues the switch: as _enable_wal 10",
    ),
    f"{_SQLITE}_enable_wal__mutmut_17": (
        'if time.monotonic() >= deadline or "locked" not in str(error):',
        "differs only when time.monotonic() returns exactly the deadline's float at the check, an instant "
        "of well under a microsecond that no test can aim at",
    ),
    f"{_SQLITE}_drop__mutmut_5": (
        'if getattr(self._local, "conn", ) is conn:',
        "_drop is only reached from _rollback on a connection this thread got from _conn(), which set "
        "self._local.conn in this thread, so the attribute exists; close() swaps self._local, but a "
        "connection close() closed makes conn.in_transaction raise before _drop is reached",
    ),
    f"{_SQLITE}_drop__mutmut_10": (
        "if conn not in self._connections:",
        "the dropped connection, already closed, then stays in the list that only close() reads; closing a "
        "closed sqlite3 connection again is a no-op, so only the list's length (private) differs",
    ),
    "taskloom.store.sqlite.x__create_private__mutmut_27": (
        "fd = os.open(path, os.O_CREAT | os.O_EXCL & os.O_WRONLY, 0o600)",
        "O_EXCL & O_WRONLY is 0, leaving O_CREAT (read-only): the file is still created empty with mode 0600 "
        "when missing, and the descriptor is only closed; only a file made by someone else between the "
        "exists() check and this open differs (opened and closed instead of refused), and either way the "
        "function returns having changed nothing of it",
    ),
    # -- taskloom/store/faults.py ------------------------------------------------------------------------
    "taskloom.store.faults.x__recover__mutmut_21": (
        "if remaining < 0:",
        "differs only when the deadline minus time.monotonic() is exactly 0.0 at the check (the budget is "
        "spent to the nanosecond), an instant no test can aim at; with a budget of 0 time has always moved on",
    ),
    "taskloom.store.faults.x__recover__mutmut_16": (
        "_quietly(policy.on_transient, None)",
        "both policies' on_transient ignore the error they are given: SQLiteFaults does nothing, PostgresFaults "
        "drops the idle pool whatever the error",
    ),
    "taskloom.store.faults.x__quietly__mutmut_1": ("action(None)", "as _recover 16: no on_transient reads its error"),
    "taskloom.store.faults.x_classify_postgres__mutmut_8": (
        'sqlstate = getattr(error, "sqlstate", )',
        "classify_postgres only ever gets psycopg errors (PostgresFaults.classify answers OSError itself and "
        "_classify answers TransientStoreError first), and every psycopg.Error has a sqlstate attribute, None "
        "when the server sent no code",
    ),
    "taskloom.store.faults.x_classify_postgres__mutmut_31": (
        'if sqlstate in _TRANSIENT_SQLSTATES or (sqlstate or "XXXX").startswith("08"):',
        "the fallback string is only used when sqlstate is None, and neither '' nor 'XXXX' starts with '08'",
    ),
}


#: the instance queue on SQLite: statements in another case (see _SQL_CASE), by mutant and mutated line
_INSTANCES_SQL_CASE: list[tuple[str, str]] = [
    ("_append__mutmut_12", '"update instance_sessions set last_seq = last_seq + ? where id = ? returning last_seq",'),
    ("_append__mutmut_13", '"UPDATE INSTANCE_SESSIONS SET LAST_SEQ = LAST_SEQ + ? WHERE ID = ? RETURNING LAST_SEQ",'),
    (
        "_append__mutmut_30",
        '"insert into instance_updates (session_id, seq, instance_id, kind, data, ts) values (?, ?, ?, ?, ?, ?)",',
    ),
    (
        "_append__mutmut_31",
        '"INSERT INTO INSTANCE_UPDATES (SESSION_ID, SEQ, INSTANCE_ID, KIND, DATA, TS) VALUES (?, ?, ?, ?, ?, ?)",',
    ),
    (
        "add_instances__mutmut_10",
        '"insert into instance_sessions (id, name, created_at) values (?, ?, ?) on conflict (id) do nothing",',
    ),
    (
        "add_instances__mutmut_11",
        '"INSERT INTO INSTANCE_SESSIONS (ID, NAME, CREATED_AT) VALUES (?, ?, ?) ON CONFLICT (ID) DO NOTHING",',
    ),
    (
        "add_instances__mutmut_19",
        '"insert into instances (id, session_id, task, target, max_parallel, arguments, status, created_at) "',
    ),
    (
        "add_instances__mutmut_20",
        '"INSERT INTO INSTANCES (ID, SESSION_ID, TASK, TARGET, MAX_PARALLEL, ARGUMENTS, STATUS, CREATED_AT) "',
    ),
    ("add_instances__mutmut_22", "\"values (?, ?, ?, ?, ?, ?, 'queued', ?) on conflict (id) do nothing\","),
    (
        "_requeue_expired__mutmut_7",
        "\"update instances set status = 'queued', lease_owner = null, lease_expires_at = null \"",
    ),
    (
        "_requeue_expired__mutmut_10",
        "\"where status = 'running' and lease_expires_at < ? returning session_id, id, attempts\",",
    ),
    ("claim_instances__mutmut_20", '"order by rowid limit ?",'),
    ("claim_instances__mutmut_21", '"ORDER BY ROWID LIMIT ?",'),
    (
        "claim_instances__mutmut_32",
        "\"select session_id, task, count(*) from instances where status = 'running' and session_id in \"",
    ),
    (
        "claim_instances__mutmut_51",
        "\"update instances set status = 'running', lease_owner = ?, lease_expires_at = ?, started_at = ?, \"",
    ),
    ("claim_instances__mutmut_54", '"attempts = attempts + 1 where id = ?",'),
    ("claim_instances__mutmut_55", '"ATTEMPTS = ATTEMPTS + 1 WHERE ID = ?",'),
    ("record__mutmut_13", "\"update instances set status = case when cancel_requested then 'cancelled' else ? end, \""),
    ("record__mutmut_16", '"result = ?, error = ?, finished_at = ?, lease_owner = null, lease_expires_at = null "'),
    ("record__mutmut_17", '"RESULT = ?, ERROR = ?, FINISHED_AT = ?, LEASE_OWNER = NULL, LEASE_EXPIRES_AT = NULL "'),
    ("record__mutmut_19", "\"where id = ? and lease_owner = ? and status = 'running' returning status\","),
    (
        "renew_leases__mutmut_7",
        "\"update instances set lease_expires_at = ? where lease_owner = ? and status = 'running' returning id\",",
    ),
    (
        "stop_requests__mutmut_7",
        "\"select id from instances where lease_owner = ? and status = 'running' and stop_requested\",",
    ),
    (
        "release_instances__mutmut_7",
        "\"update instances set status = 'queued', lease_owner = null, lease_expires_at = null \"",
    ),
    ("release_instances__mutmut_10", "\"where id = ? and lease_owner = ? and status = 'running'\","),
    (
        "request_stop__mutmut_8",
        'row = conn.execute("select session_id, status from instances where id = ?", (instance_id,)).fetchone()',
    ),
    (
        "request_stop__mutmut_9",
        'row = conn.execute("SELECT SESSION_ID, STATUS FROM INSTANCES WHERE ID = ?", (instance_id,)).fetchone()',
    ),
    (
        "request_stop__mutmut_21",
        "\"update instances set status = 'cancelled', stop_requested = 1, cancel_requested = 1, \"",
    ),
    ("request_stop__mutmut_24", '"finished_at = ? where id = ?",'),
    ("request_stop__mutmut_25", '"FINISHED_AT = ? WHERE ID = ?",'),
    (
        "request_stop__mutmut_38",
        '"update instances set stop_requested = 1, cancel_requested = cancel_requested or ? where id = ?",',
    ),
    (
        "request_stop__mutmut_39",
        '"UPDATE INSTANCES SET STOP_REQUESTED = 1, CANCEL_REQUESTED = CANCEL_REQUESTED OR ? WHERE ID = ?",',
    ),
    ("register_worker__mutmut_7", '"insert into instance_workers (worker_id, target, last_seen) values (?, ?, ?) "'),
    ("register_worker__mutmut_8", '"INSERT INTO INSTANCE_WORKERS (WORKER_ID, TARGET, LAST_SEEN) VALUES (?, ?, ?) "'),
    ("register_worker__mutmut_10", '"on conflict (target, worker_id) do update set last_seen = excluded.last_seen",'),
    ("register_worker__mutmut_11", '"ON CONFLICT (TARGET, WORKER_ID) DO UPDATE SET LAST_SEEN = EXCLUDED.LAST_SEEN",'),
    ("unregister_worker__mutmut_6", 'conn.execute("delete from instance_workers where worker_id = ?", (worker_id,))'),
    ("unregister_worker__mutmut_7", 'conn.execute("DELETE FROM INSTANCE_WORKERS WHERE WORKER_ID = ?", (worker_id,))'),
    ("load_updates__mutmut_4", 'conn.execute("begin")'),
    (
        "load_updates__mutmut_11",
        "\"select exists (select 1 from instances where session_id = ? and status in ('queued', 'running'))\",",
    ),
    (
        "load_updates__mutmut_20",
        '"select seq, instance_id, kind, data from instance_updates where session_id = ? and seq > ? "',
    ),
    (
        "load_updates__mutmut_21",
        '"SELECT SEQ, INSTANCE_ID, KIND, DATA FROM INSTANCE_UPDATES WHERE SESSION_ID = ? AND SEQ > ? "',
    ),
    ("load_updates__mutmut_23", '"order by seq limit ?",'),
    ("load_updates__mutmut_24", '"ORDER BY SEQ LIMIT ?",'),
    ("load_updates__mutmut_27", 'conn.execute("commit")'),
]
EQUIVALENT.update(
    {f"taskloom.store.instances.xǁSQLiteInstanceQueueǁ{name}": (line, _SQL_CASE) for name, line in _INSTANCES_SQL_CASE}
)
_INSTANCES_SQL_CASE_SQLITE_SEEN: list[tuple[str, str]] = [
    ("seen_workers__mutmut_7", '"select worker_id, target, last_seen from instance_workers where last_seen >= ? "'),
    ("seen_workers__mutmut_8", '"SELECT WORKER_ID, TARGET, LAST_SEEN FROM INSTANCE_WORKERS WHERE LAST_SEEN >= ? "'),
    ("seen_workers__mutmut_10", '"order by worker_id, target",'),
    ("seen_workers__mutmut_11", '"ORDER BY WORKER_ID, TARGET",'),
]
EQUIVALENT.update(
    {
        f"taskloom.store.instances.xǁSQLiteInstanceQueueǁ{name}": (line, _SQL_CASE)
        for name, line in _INSTANCES_SQL_CASE_SQLITE_SEEN
    }
)

_PG_SQL_CASE = (
    "PostgreSQL reads keywords and function names in any case and folds unquoted table and column names to "
    "lower case; the string literals that are data ('queued', 'running', ...) and the %s placeholders are "
    "unchanged (a mutant that upper-cases a %s breaks the statement and is killed)"
)
#: the instance queue on PostgreSQL: statements in another case (see _PG_SQL_CASE), by mutant and mutated line
_PG_INSTANCES_SQL_CASE: list[tuple[str, str]] = [
    (
        "_append__mutmut_14",
        'conn.execute("select id from instance_sessions where id = any(%s) order by id for update", (sessions,))',
    ),
    ("_append__mutmut_22", '"update instance_sessions as s set last_seq = s.last_seq + u.n "'),
    ("_append__mutmut_23", '"UPDATE INSTANCE_SESSIONS AS S SET LAST_SEQ = S.LAST_SEQ + U.N "'),
    (
        "_append__mutmut_25",
        '"from unnest(%s::text[], %s::bigint[]) as u (id, n) where s.id = u.id returning s.id, s.last_seq",',
    ),
    ("_append__mutmut_51", '"insert into instance_updates (session_id, seq, instance_id, kind, data, ts) "'),
    ("_append__mutmut_52", '"INSERT INTO INSTANCE_UPDATES (SESSION_ID, SEQ, INSTANCE_ID, KIND, DATA, TS) "'),
    ("_append__mutmut_54", '"select session_id, seq, instance_id, kind, data, %s "'),
    ("_append__mutmut_57", '"from unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[]) "'),
    ("_append__mutmut_60", '"as u (session_id, seq, instance_id, kind, data)",'),
    ("_append__mutmut_61", '"AS U (SESSION_ID, SEQ, INSTANCE_ID, KIND, DATA)",'),
    ("add_instances__mutmut_11", '"insert into instance_sessions (id, name, created_at) "'),
    ("add_instances__mutmut_12", '"INSERT INTO INSTANCE_SESSIONS (ID, NAME, CREATED_AT) "'),
    (
        "add_instances__mutmut_14",
        '"select id, name, %s from unnest(%s::text[], %s::text[]) as s (id, name) on conflict (id) do nothing",',
    ),
    (
        "add_instances__mutmut_24",
        '"insert into instances (id, session_id, task, target, max_parallel, arguments, status, created_at) "',
    ),
    (
        "add_instances__mutmut_25",
        '"INSERT INTO INSTANCES (ID, SESSION_ID, TASK, TARGET, MAX_PARALLEL, ARGUMENTS, STATUS, CREATED_AT) "',
    ),
    ("add_instances__mutmut_27", "\"select id, session_id, task, target, max_parallel, arguments, 'queued', %s \""),
    (
        "add_instances__mutmut_30",
        '"from unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::text[]) "',
    ),
    (
        "add_instances__mutmut_33",
        '"with ordinality as b (id, session_id, task, target, max_parallel, arguments, position) "',
    ),
    (
        "add_instances__mutmut_34",
        '"WITH ORDINALITY AS B (ID, SESSION_ID, TASK, TARGET, MAX_PARALLEL, ARGUMENTS, POSITION) "',
    ),
    ("add_instances__mutmut_36", '"order by position on conflict (id) do nothing",'),
    ("add_instances__mutmut_37", '"ORDER BY POSITION ON CONFLICT (ID) DO NOTHING",'),
    ("add_instances__mutmut_43", "conn.execute(\"select pg_notify(%s, '')\", (INSTANCE_CHANNEL,))"),
    (
        "claim_instances__mutmut_12",
        "\"update instances set status = 'queued', lease_owner = null, lease_expires_at = null \"",
    ),
    (
        "claim_instances__mutmut_15",
        "\"where status = 'running' and lease_expires_at < %s returning session_id, id, attempts\",",
    ),
    ("claim_instances__mutmut_32", '"order by position limit %s for update of i skip locked",'),
    ("claim_instances__mutmut_46", 'conn.execute("select pg_advisory_xact_lock(%s)", (key,))'),
    (
        "claim_instances__mutmut_54",
        "\"select session_id, task, count(*) from instances where status = 'running' and session_id = any(%s) \"",
    ),
    ("claim_instances__mutmut_57", '"group by session_id, task",'),
    ("claim_instances__mutmut_58", '"GROUP BY SESSION_ID, TASK",'),
    (
        "claim_instances__mutmut_76",
        "\"update instances set status = 'running', lease_owner = %s, lease_expires_at = %s, started_at = %s, \"",
    ),
    ("claim_instances__mutmut_79", '"attempts = attempts + 1 where id = any(%s)",'),
    (
        "load_updates__mutmut_15",
        '"select seq, instance_id, kind, data from instance_updates where session_id = %s and seq > %s "',
    ),
    ("load_updates__mutmut_18", '"order by seq limit %s",'),
    (
        "load_updates__mutmut_7",
        "\"select exists (select 1 from instances where session_id = %s and status in ('queued', 'running'))\",",
    ),
    ("record__mutmut_13", '"update instances as i set "'),
    ("record__mutmut_14", '"UPDATE INSTANCES AS I SET "'),
    ("record__mutmut_16", "\"status = case when i.cancel_requested then 'cancelled' else o.status end, \""),
    (
        "record__mutmut_19",
        '"result = o.result, error = o.error, finished_at = %s, lease_owner = null, lease_expires_at = null "',
    ),
    (
        "record__mutmut_22",
        '"from unnest(%s::text[], %s::text[], %s::text[], %s::text[]) as o (id, status, result, error) "',
    ),
    (
        "record__mutmut_25",
        "\"where i.id = o.id and i.lease_owner = %s and i.status = 'running' returning i.id, i.status\",",
    ),
    ("record__mutmut_44", "conn.execute(\"select pg_notify(%s, '')\", (INSTANCE_CHANNEL,))"),
    ("register_worker__mutmut_12", '"on conflict (target, worker_id) do update set last_seen = excluded.last_seen",'),
    ("register_worker__mutmut_13", '"ON CONFLICT (TARGET, WORKER_ID) DO UPDATE SET LAST_SEEN = EXCLUDED.LAST_SEEN",'),
    ("register_worker__mutmut_6", '"insert into instance_workers (worker_id, target, last_seen) "'),
    ("register_worker__mutmut_7", '"INSERT INTO INSTANCE_WORKERS (WORKER_ID, TARGET, LAST_SEEN) "'),
    ("register_worker__mutmut_9", '"select %s, target, %s from unnest(%s::text[]) as t (target) "'),
    ("release_instances__mutmut_11", "\"where id = any(%s) and lease_owner = %s and status = 'running'\","),
    ("release_instances__mutmut_19", "conn.execute(\"select pg_notify(%s, '')\", (INSTANCE_CHANNEL,))"),
    (
        "release_instances__mutmut_8",
        "\"update instances set status = 'queued', lease_owner = null, lease_expires_at = null \"",
    ),
    (
        "renew_leases__mutmut_7",
        "\"update instances set lease_expires_at = %s where lease_owner = %s and status = 'running' returning id\",",
    ),
    (
        "request_stop__mutmut_21",
        "\"update instances set status = 'cancelled', stop_requested = true, cancel_requested = true, \"",
    ),
    ("request_stop__mutmut_24", '"finished_at = %s where id = %s",'),
    (
        "request_stop__mutmut_38",
        '"update instances set stop_requested = true, cancel_requested = cancel_requested or %s where id = %s",',
    ),
    ("request_stop__mutmut_8", '"select session_id, status from instances where id = %s for update", (instance_id,)'),
    ("seen_workers__mutmut_10", '"order by worker_id, target",'),
    ("seen_workers__mutmut_11", '"ORDER BY WORKER_ID, TARGET",'),
    ("seen_workers__mutmut_7", '"select worker_id, target, last_seen from instance_workers where last_seen >= %s "'),
    (
        "served_targets__mutmut_11",
        '"select distinct target from instance_workers where target = any(%s) and last_seen >= %s",',
    ),
    (
        "stop_requests__mutmut_7",
        "\"select id from instances where lease_owner = %s and status = 'running' and stop_requested\",",
    ),
    ("unregister_worker__mutmut_6", 'conn.execute("delete from instance_workers where worker_id = %s", (worker_id,))'),
]
EQUIVALENT.update(
    {
        f"taskloom.store.instances.xǁPostgresInstanceQueueǁ{name}": (line, _PG_SQL_CASE)
        for name, line in _PG_INSTANCES_SQL_CASE
    }
)
#: the PostgreSQL store's own statements in another case (see _PG_SQL_CASE)
_PG_STORE_SQL_CASE: list[tuple[str, str]] = [
    ("x__insert_events__mutmut_7", '"insert into events (execution_id, type, step_id, name, value, data, ts) "'),
    ("x__insert_events__mutmut_8", '"INSERT INTO EVENTS (EXECUTION_ID, TYPE, STEP_ID, NAME, VALUE, DATA, TS) "'),
    ("x__insert_events__mutmut_10", '"select %s, type, step_id, name, value, data, %s "'),
    ("x__insert_events__mutmut_13", '"from unnest(%s::text[], %s::text[], %s::text[], %s::bytea[], %s::text[]) "'),
    ("x__insert_events__mutmut_16", '"with ordinality as batch (type, step_id, name, value, data, position) "'),
    ("x__insert_events__mutmut_17", '"WITH ORDINALITY AS BATCH (TYPE, STEP_ID, NAME, VALUE, DATA, POSITION) "'),
    ("x__insert_events__mutmut_19", '"order by position returning seq",'),
    ("x__insert_events__mutmut_20", '"ORDER BY POSITION RETURNING SEQ",'),
    (
        "x__wake_if_unread__mutmut_7",
        '"update executions set wake_at = %s where id = %s and exists (select 1 from messages "',
    ),
    ("x__wake_if_unread__mutmut_10", '"where execution_id = %s and topic = %s and received_step is null)",'),
]
EQUIVALENT.update({f"taskloom.store.postgres.{name}": (line, _PG_SQL_CASE) for name, line in _PG_STORE_SQL_CASE})
EQUIVALENT.update(
    {
        f"taskloom.store.sqlite.{name}": (line, _SQL_CASE)
        for name, line in [
            (
                "x__last_pause__mutmut_7",
                '"select name from events where execution_id = ? and type = ? order by seq desc limit 1",',
            ),
            (
                "x__last_pause__mutmut_8",
                '"SELECT NAME FROM EVENTS WHERE EXECUTION_ID = ? AND TYPE = ? ORDER BY SEQ DESC LIMIT 1",',
            ),
            (
                "x__wake_if_unread__mutmut_7",
                '"update executions set wake_at = ? where id = ? and exists (select 1 from messages "',
            ),
            (
                "x__wake_if_unread__mutmut_8",
                '"UPDATE EXECUTIONS SET WAKE_AT = ? WHERE ID = ? AND EXISTS (SELECT 1 FROM MESSAGES "',
            ),
            ("x__wake_if_unread__mutmut_10", '"where execution_id = ? and topic = ? and received_step is null)",'),
            ("x__wake_if_unread__mutmut_11", '"WHERE EXECUTION_ID = ? AND TOPIC = ? AND RECEIVED_STEP IS NULL)",'),
        ]
    }
)
EQUIVALENT["taskloom.store.sqlite.x__event_rows__mutmut_2"] = (
    'json.dumps(e.data, separators=(",", ":")) if (e.data) or True else None,',
    "as the PostgreSQL store's _insert_events 22: empty data stored as '{}' instead of NULL reads back as {}",
)
EQUIVALENT["taskloom.store.postgres.x__insert_events__mutmut_22"] = (
    '[json.dumps(e.data, separators=(",", ":")) if (e.data) or True else None for e in events],',
    "an event's empty data is then stored as '{}' instead of NULL, and Event.from_row reads both as {} "
    "(`json.loads(data) if data else {}`); NewEvent.data is always a dict",
)
EQUIVALENT["taskloom.store.instances.xǁPostgresInstanceQueueǁ_append__mutmut_7"] = (
    "if len(sessions) >= 1:",
    "also locks a single session's row with SELECT ... FOR UPDATE before the UPDATE that locks that same row: "
    "one row has one order, so only the cost of a statement differs",
)
EQUIVALENT.update(
    {
        "taskloom.store.instances.x__admit__mutmut_11": (
            "if len(admitted) > limit:",
            "both queues pass _admit the rows of a query with LIMIT limit, so it never sees more than limit rows "
            "and stopping one row later changes nothing",
        ),
        "taskloom.store.instances.x__group_lock_key__mutmut_11": (
            'digest = hashlib.blake2b(f"{session_id}\\x00{task}".encode("UTF-8", "surrogatepass"), '
            "digest_size=8).digest()",
            "Python's codec names are case-insensitive: 'UTF-8' is the same codec as 'utf-8'",
        ),
        "taskloom.store.instances.x__group_lock_key__mutmut_19": (
            "return int.from_bytes(digest, signed=True)",
            "int.from_bytes's byteorder defaults to 'big' since Python 3.11, the oldest this project supports",
        ),
        "taskloom.store.instances.x__json__mutmut_5": (
            'return json.dumps(value, separators=(",", ":"))',
            "json.dumps's ensure_ascii defaults to True",
        ),
        "taskloom.store.instances.xǁSQLiteInstanceQueueǁrequest_stop__mutmut_42": (
            "(2 if cancel else 0, instance_id),",
            "the value is only used in `cancel_requested OR ?`, and SQLite's OR answers 1 or 0 whatever true "
            "value it is given",
        ),
    }
)

_PG = "taskloom.store.postgres.xǁPostgresStoreǁ"
EQUIVALENT.update(
    {
        "taskloom.store.postgres.xǁChannelListenerǁwait__mutmut_44": (
            "woke = any(True for _ in conn.notifies(timeout=max(0.0, timeout), stop_after=2))",
            "any() stops consuming the generator at the first notification it yields, so notifies() is never "
            "asked for a second one whatever stop_after says (the burst is drained by the loop after)",
        ),
        f"{_PG}__init____mutmut_10": (
            "self._pid = None",
            "the first checkout (the migration, in __init__ itself) sees a pid that is not this process's and "
            "runs _after_fork, which with an empty pool and no LISTEN connection yet only sets the real pid and "
            "a new lock; nothing reads _pid before that checkout (close() and _discard_idle come later)",
        ),
        f"{_PG}_checkin__mutmut_1": (
            "if self._pid == os.getpid() or conn.info.transaction_status == pq.TransactionStatus.IDLE:",
            "at check-in the pid always matches (_checkout just set it, and a fork between checkout and check-in "
            "leaves the parent's thread behind), and a connection not closed is always IDLE after "
            "conn.transaction() committed or rolled back; a broken one is caught by `if conn.closed` first",
        ),
        f"{_PG}_connect__mutmut_1": (
            "return self._open_connection(autocommit=None)",
            "psycopg stores bool(autocommit) (connect and the autocommit setter alike), and bool(None) is False",
        ),
    }
)

_PROTOCOL = (
    "a default in the Store Protocol's signature: the Protocol only describes the stores for the type checker; "
    "every call goes to SQLiteStore or PostgresStore, whose own signatures carry the defaults that apply"
)
EQUIVALENT.update(
    {
        "taskloom.store.base.xǁStoreǁlist_executions__mutmut_1": (
            "self, *, workflow: str | None = None, status: str | None = None, limit: int = 101",
            _PROTOCOL,
        ),
        "taskloom.store.base.xǁStoreǁload_events__mutmut_1": (
            "def load_events(self, execution_id: str, after_seq: int = 1) -> list[Event]:",
            _PROTOCOL,
        ),
        "taskloom.store.base.xǁStoreǁrelease_execution__mutmut_1": ("crashed: bool = True,", _PROTOCOL),
    }
)

_CLASSIFIER_BUG = (
    "the fallback for a classifier that raises (a bug in it); no real one can: SQLiteFaults.classify, "
    "PostgresFaults.classify, classify_sqlite and classify_postgres only read attributes and format strings, "
    "and a store whose classifier is made to raise would test that fake"
)
_CLEANUP_FAILS = (
    "the log of an on_transient that raises; no real one does: SQLiteFaults' does nothing, PostgresFaults' "
    "closes idle connections catching psycopg.Error, and a policy made to raise would test that fake"
)

#: Mutants in code the test machine cannot reach without faking part of the store (same shape as EQUIVALENT).
UNREACHABLE: dict[str, tuple[str, str]] = {
    "taskloom.store.postgres.xǁChannelListenerǁwait__mutmut_24": (
        "pause = min(RELISTEN_DELAY, max(0.0, timeout + (time.monotonic() - started)))",
        "the pause then grows by twice the time the failed connect took instead of shrinking by it; a refused "
        "connection fails in a millisecond here (too little to tell), and a silent server only after libpq's "
        "2 s minimum connect timeout, where a test would have to tell 2.2 s from 2.5 s on a shared machine",
    ),
    "taskloom.store.instances.xǁPostgresInstanceQueueǁ_append__mutmut_8": (
        "if len(sessions) > 2:",
        "two sessions' rows then get locked by the UPDATE ... FROM unnest in the order its plan visits them, "
        "not sorted first; that can deadlock only if two writers' statements visit the same two rows in "
        "opposite orders, which the planner decides (the same plan visits them alike) and no test can force "
        "without rewriting the statement",
    ),
    "taskloom.store.faults.x__classify__mutmut_8": (
        'return Fault(None, f"unexpected {type(error).__name__}: {error}; {_UNEXPECTED_ADVICE}")',
        _CLASSIFIER_BUG,
    ),
    "taskloom.store.faults.x__classify__mutmut_9": ("return Fault(False, None)", _CLASSIFIER_BUG),
    "taskloom.store.faults.x__classify__mutmut_10": (
        'return Fault(f"unexpected {type(error).__name__}: {error}; {_UNEXPECTED_ADVICE}")',
        _CLASSIFIER_BUG,
    ),
    "taskloom.store.faults.x__classify__mutmut_11": ("return Fault(False, )", _CLASSIFIER_BUG),
    "taskloom.store.faults.x__classify__mutmut_12": (
        'return Fault(True, f"unexpected {type(error).__name__}: {error}; {_UNEXPECTED_ADVICE}")',
        _CLASSIFIER_BUG,
    ),
    "taskloom.store.faults.x__classify__mutmut_13": (
        'return Fault(False, f"unexpected {type(None).__name__}: {error}; {_UNEXPECTED_ADVICE}")',
        _CLASSIFIER_BUG,
    ),
    "taskloom.store.faults.x__quietly__mutmut_2": ("logger.debug(None, exc_info=True)", _CLEANUP_FAILS),
    "taskloom.store.faults.x__quietly__mutmut_3": (
        'logger.debug("cleaning up after a store fault failed", exc_info=None)',
        _CLEANUP_FAILS,
    ),
    "taskloom.store.faults.x__quietly__mutmut_4": ("logger.debug(exc_info=True)", _CLEANUP_FAILS),
    "taskloom.store.faults.x__quietly__mutmut_5": (
        'logger.debug("cleaning up after a store fault failed", )',
        _CLEANUP_FAILS,
    ),
    "taskloom.store.faults.x__quietly__mutmut_6": (
        'logger.debug("XXcleaning up after a store fault failedXX", exc_info=True)',
        _CLEANUP_FAILS,
    ),
    "taskloom.store.faults.x__quietly__mutmut_7": (
        'logger.debug("CLEANING UP AFTER A STORE FAULT FAILED", exc_info=True)',
        _CLEANUP_FAILS,
    ),
    "taskloom.store.faults.x__quietly__mutmut_8": (
        'logger.debug("cleaning up after a store fault failed", exc_info=False)',
        _CLEANUP_FAILS,
    ),
}
