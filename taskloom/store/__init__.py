"""Stores: ``open_store(url)`` picks the implementation from the URL's scheme."""

from __future__ import annotations

import threading

from taskloom.errors import StoreError
from taskloom.store.base import Acquired, ExecutionRecord, ExecutionStatus, Store

__all__ = ["Acquired", "ExecutionRecord", "ExecutionStatus", "Store", "default_store", "open_store"]


def open_store(url: str) -> Store:
    """Open the store at ``url``: ``sqlite:///path`` (or a bare path) or ``postgresql://...``."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from taskloom.store.postgres import PostgresStore
        except ImportError as error:
            raise StoreError(
                f"TASKLOOM_DATABASE_URL is a PostgreSQL URL but the driver is missing ({error}); "
                "install it with: pip install 'taskloom[postgres]'"
            ) from None
        store: Store = PostgresStore(url)
        return store
    if "://" in url and not url.startswith("sqlite:"):
        raise StoreError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")
    from taskloom.store.sqlite import SQLiteStore

    return SQLiteStore(url)


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
    from taskloom.settings import Settings

    return stores.get(Settings.from_env().database_url)
