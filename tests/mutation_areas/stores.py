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

#: module path prefix -> the test files that exercise it (tried before tests/mutate.py's own map)
TESTS: dict[str, list[str]] = {
    "taskloom/store/sqlite.py": [*_STORE_TESTS, "tests/store/test_mutants_sqlite.py"],
    "taskloom/store/faults.py": [
        *_STORE_TESTS,
        "tests/store/test_mutants_sqlite.py",
        "tests/store/test_mutants_faults.py",
    ],
    "taskloom/store/base.py": [*_STORE_TESTS, "tests/store/test_mutants_base.py"],
    "taskloom/store/instances.py": [*_STORE_TESTS, "tests/store/test_mutants_instances.py"],
    "taskloom/store/postgres.py": [*_STORE_TESTS, "tests/store/test_mutants_postgres.py"],
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
}
