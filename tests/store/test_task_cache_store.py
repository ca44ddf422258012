"""Contract of the task cache (migration 005, ``cache=True``), on SQLite and PostgreSQL alike.

Rows are keyed by task name and argument hash; a row past its ``expires_at`` is not returned; clearing
works per task, for every task, and for expired rows only. The caller's clock decides expiry.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from taskloom.store import Store, open_store
from taskloom.store.migrations import load_migrations

NOW = 1_000_000.0


def run_sql(url: str, sql: str) -> list[tuple[Any, ...]]:
    """One statement straight on the store's database, outside any Store."""
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []
    db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_cached_result_is_found_by_task_and_key_and_nothing_else(store: Store) -> None:
    assert store.get_cached_result("price", "k1", NOW) is None
    store.put_cached_result("price", "k1", b"\x00value-1", None)

    assert store.get_cached_result("price", "k1", NOW) == b"\x00value-1"
    assert store.get_cached_result("price", "k2", NOW) is None
    assert store.get_cached_result("other", "k1", NOW) is None


def test_writing_a_key_again_replaces_its_value_and_expiry(store: Store) -> None:
    store.put_cached_result("price", "k1", b"old", NOW + 10)
    store.put_cached_result("price", "k1", b"new", None)

    assert store.get_cached_result("price", "k1", NOW + 1_000) == b"new"  # the new row never expires


def test_a_result_is_returned_until_its_expiry_and_not_from_then_on(store: Store) -> None:
    store.put_cached_result("price", "k1", b"v", NOW + 60)

    assert store.get_cached_result("price", "k1", NOW + 59.5) == b"v"
    assert store.get_cached_result("price", "k1", NOW + 60) is None
    assert store.get_cached_result("price", "k1", NOW + 61) is None


def test_clearing_one_task_leaves_the_others(store: Store) -> None:
    store.put_cached_result("price", "k1", b"1", None)
    store.put_cached_result("price", "k2", b"2", None)
    store.put_cached_result("stock", "k1", b"3", None)

    assert store.clear_cached_results("price") == 2

    assert store.get_cached_result("price", "k1", NOW) is None
    assert store.get_cached_result("price", "k2", NOW) is None
    assert store.get_cached_result("stock", "k1", NOW) == b"3"
    assert store.clear_cached_results("price") == 0


def test_clearing_without_a_task_clears_every_task(store: Store) -> None:
    store.put_cached_result("price", "k1", b"1", None)
    store.put_cached_result("stock", "k1", b"2", NOW + 5)

    assert store.clear_cached_results() == 2

    assert store.get_cached_result("price", "k1", NOW) is None
    assert store.get_cached_result("stock", "k1", NOW) is None


def test_clearing_expired_rows_keeps_those_still_in_use(store: Store) -> None:
    store.put_cached_result("price", "old", b"1", NOW - 1)
    store.put_cached_result("price", "fresh", b"2", NOW + 100)
    store.put_cached_result("price", "forever", b"3", None)
    store.put_cached_result("stock", "old", b"4", NOW - 1)

    assert store.clear_cached_results("price", expired_at=NOW) == 1

    assert store.get_cached_result("price", "fresh", NOW) == b"2"
    assert store.get_cached_result("price", "forever", NOW) == b"3"
    assert store.clear_cached_results(expired_at=NOW) == 1  # stock's expired row; the rest stay
    assert store.get_cached_result("price", "forever", NOW) == b"3"


def test_cached_results_outlive_the_store_object(store: Store) -> None:
    store.put_cached_result("price", "k1", b"durable", None)
    store.close()

    reopened = open_store(store.url)
    try:
        assert reopened.get_cached_result("price", "k1", NOW) == b"durable"
    finally:
        reopened.close()


def test_a_store_at_schema_4_gains_the_cache_table_and_keeps_its_executions(store: Store) -> None:
    store.create_execution("e1", "wf", None, "running")
    store.close()
    run_sql(store.url, "DROP TABLE task_cache")
    run_sql(store.url, "DELETE FROM schema_version WHERE version >= 5")

    reopened = open_store(store.url)
    try:
        reopened.put_cached_result("price", "k1", b"v", None)
        assert reopened.get_cached_result("price", "k1", NOW) == b"v"
        assert reopened.get_execution("e1") is not None
    finally:
        reopened.close()
    versions = [v for (v,) in run_sql(store.url, "SELECT version FROM schema_version ORDER BY version")]
    assert versions[-1] == len(load_migrations("postgres" if store.url.startswith("postgresql") else "sqlite"))


def test_the_cache_migration_is_number_5_in_both_dialects() -> None:
    for dialect in ("sqlite", "postgres"):
        assert [version for version, _ in load_migrations(dialect)][-1] >= 5
        assert any(version == 5 and "task_cache" in sql for version, sql in load_migrations(dialect))
