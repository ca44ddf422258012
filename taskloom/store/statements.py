"""One transaction of plain SQL on either store, under the store's fault policy.

Small features with a table or two of their own (named API tokens, retention) run a few statements that
read the same in both dialects. Rather than a method per statement on each store class, they hand their
statements to :class:`Statements`, which borrows the store's transaction (``BEGIN IMMEDIATE`` on SQLite,
a pooled connection's transaction on PostgreSQL), writes ``?`` placeholders as PostgreSQL's ``%s``, and
retries transient faults (a restarting server, a held lock) like every store method, so a store error
is a :class:`~taskloom.errors.StoreError`, never a bare driver exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskloom.store.faults import retrying

if TYPE_CHECKING:
    from taskloom.store.base import Store

__all__ = ["Statements", "is_postgres"]

Rows = list[tuple[Any, ...]]


def is_postgres(store: Store) -> bool:
    """Whether ``store`` is a PostgresStore, without importing the PostgreSQL driver to ask."""
    return type(store).__module__ == "taskloom.store.postgres"


class Statements:
    """Runs statements in one transaction of ``store``; ``postgres`` says which dialect to write."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.postgres = is_postgres(store)
        # what @retrying reads: the store's own fault policy and outage log
        self._faults = store._faults  # type: ignore[attr-defined]
        self._outage = store._outage  # type: ignore[attr-defined]

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        if self.postgres:
            with self._store._transaction() as conn:  # type: ignore[attr-defined]
                yield conn
        else:
            with self._store._write() as conn:  # type: ignore[attr-defined]
                yield conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    @retrying
    def run(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """One statement in its own transaction; its rows (none for a statement without a result)."""
        return self.run_all([(sql, params)])[-1]

    @retrying
    def run_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Rows]:
        """Several statements in one transaction, all or none; the rows of each."""
        results: list[Rows] = []
        with self._transaction() as conn:
            for sql, params in statements:
                cursor = conn.execute(self._sql(sql), tuple(params))
                results.append(list(cursor.fetchall()) if cursor.description is not None else [])
        return results
