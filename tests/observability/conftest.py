"""Fixtures of the log and trace tests: a store per test (both stores), captured records, an in-memory
span exporter.

A test that runs a workflow asks for ``isolated_store`` and so runs once per store (``[sqlite]``,
``[postgres]``, through ``store_kind`` in tests/conftest.py); one that does not (records outside any
execution, instances, imports) runs once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom import tracing
from taskloom.store import stores

#: variables that would make a test depend on the developer's environment
_FOREIGN_SETTINGS = ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_SECRET_KEY")


@pytest.fixture
def isolated_store(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's store (SQLite in tmp_path, or a PostgreSQL schema of its own) as the default store."""
    monkeypatch.setenv("TASKLOOM_DATABASE_URL", store_url)
    monkeypatch.setenv("TASKLOOM_HOME", str(tmp_path))
    for name in _FOREIGN_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    stores.clear()
    yield store_url
    stores.clear()


class Collected(logging.Handler):
    """Keeps every record it is given, as made (attributes and all)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def by_message(self) -> dict[str, logging.LogRecord]:
        return {record.getMessage(): record for record in self.records}


@pytest.fixture
def collected() -> Iterator[Collected]:
    """A handler on the root logger, which is at DEBUG meanwhile: every record made anywhere lands here."""
    root = logging.getLogger()
    handler = Collected()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def spans() -> Iterator[Any]:
    """Tracing on, into an in-memory exporter (yielded); off again afterwards."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    yield exporter
    tracing.disable()
    provider.shutdown()
