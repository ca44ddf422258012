"""Stores: ``open_store(url)`` picks the implementation from the URL's scheme."""

from __future__ import annotations

import threading

from taskloom.errors import StoreError
from taskloom.settings import Settings
from taskloom.store.base import Acquired, ExecutionRecord, ExecutionStatus, Store

__all__ = [
    "Acquired",
    "ExecutionRecord",
    "ExecutionStatus",
    "Store",
    "default_store",
    "describe_store",
    "is_postgres_url",
    "open_store",
]

#: the URL schemes of a PostgreSQL store; anything else is an SQLite file
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` (TASKLOOM_DATABASE_URL) names a PostgreSQL store rather than an SQLite file."""
    return url.startswith(POSTGRES_SCHEMES)


def describe_store(url: str) -> str:
    """One line naming the store at ``url`` for a long-running process to print at start.

    A worker or server started in another folder silently opens a new, empty SQLite file there (and a
    client then waits for ever); saying which file, and that it is new, makes that visible at once.
    A PostgreSQL URL is shown without its password.
    """
    if is_postgres_url(url):
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        if parts.password is not None:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            url = urlunsplit(parts._replace(netloc=netloc))
        return f"store {url}"
    from taskloom.store.sqlite import path_from_url

    path = path_from_url(url)
    where = path.resolve()
    if path.exists():
        return f"store sqlite:///{where}"
    return (
        f"store sqlite:///{where} (a new, empty file: set TASKLOOM_DATABASE_URL or TASKLOOM_HOME "
        "if the executions are in another store)"
    )


def open_store(url: str, settings: Settings | None = None) -> Store:
    """Open the store at ``url``: ``sqlite:///path`` (or a bare path) or ``postgresql://...``.

    ``settings`` (default: :meth:`Settings.from_env`) gives the retry budget for transient faults
    (TASKLOOM_STORE_RETRY_SECONDS) and SQLite's busy timeout (TASKLOOM_SQLITE_BUSY_TIMEOUT).
    """
    if settings is None:
        settings = Settings.from_env()
    if is_postgres_url(url):
        try:
            from taskloom.store.postgres import PostgresStore
        except ImportError as error:
            raise StoreError(
                f"TASKLOOM_DATABASE_URL is a PostgreSQL URL but the driver is missing ({error}); "
                "install it with: pip install 'taskloom[postgres]'"
            ) from None
        store: Store = PostgresStore(url, retry_seconds=settings.store_retry_seconds)
        return store
    if "://" in url and not url.startswith("sqlite:"):
        raise StoreError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")
    from taskloom.store.sqlite import SQLiteStore

    return SQLiteStore(url, busy_timeout=settings.sqlite_busy_timeout, retry_seconds=settings.store_retry_seconds)


class _StoreRegistry:
    """The open stores of this process, one per URL, so every workflow run reuses its connections."""

    def __init__(self) -> None:
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> Store:
        with self._lock:
            store = self._stores.get(url)
            if store is None:
                store = self._stores[url] = open_store(url)
            return store

    def clear(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()


stores = _StoreRegistry()


def default_store() -> Store:
    """The store named by ``TASKLOOM_DATABASE_URL`` (default ``.taskloom/taskloom.db``)."""
    return stores.get(Settings.from_env().database_url)
