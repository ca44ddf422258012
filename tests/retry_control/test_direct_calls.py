"""retry_on on direct calls (sync and async), instances in a session, and the local-process backend:
an error outside retry_on fails at once, without retries, through the same policy."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskloom import Session, task
from taskloom.backends import get_backend
from taskloom.backends.process import ProcessBackend

DEADLINE = 20.0
NO_WAIT = {"retry_delay": 0, "retry_max_attempts": 3}


class Failing:
    """Raises ``error`` on every call and counts the calls."""

    def __init__(self, error: Exception) -> None:
        self.error, self.calls = error, 0

    def __call__(self) -> None:
        self.calls += 1
        raise self.error


def test_an_error_outside_retry_on_fails_at_once() -> None:
    body = Failing(KeyError("missing"))
    with pytest.raises(KeyError):
        task(retry_on=ValueError, **NO_WAIT)(body)()
    assert body.calls == 1


def test_an_error_inside_retry_on_is_retried_subclasses_included() -> None:
    body = Failing(FileNotFoundError("gone"))
    with pytest.raises(FileNotFoundError):
        task(retry_on=(ValueError, OSError), **NO_WAIT)(body)()
    assert body.calls == 4


def test_an_async_task_fails_at_once_outside_retry_on() -> None:
    body = Failing(KeyError("missing"))

    async def run() -> None:
        body()

    with pytest.raises(KeyError):
        asyncio.run(task(retry_on=ValueError, **NO_WAIT)(run)())
    assert body.calls == 1


def test_an_error_outside_retry_on_still_gets_the_fallback() -> None:
    body = Failing(KeyError("missing"))
    assert task(retry_on=ValueError, fallback=lambda: "fallback", **NO_WAIT)(body)() == "fallback"
    assert body.calls == 1


def test_an_instance_in_a_session_fails_at_once_outside_retry_on() -> None:
    body = Failing(KeyError("missing"))
    strict = task(name="strict", retry_on=ValueError, **NO_WAIT)(body)
    with Session():
        future = strict.instance().start()
        with pytest.raises(KeyError):
            future.result(DEADLINE)
    assert body.calls == 1


# -- the local-process backend: attempts in worker processes, counted in a file --------------------
@task(name="counted", retry_on=ValueError, **NO_WAIT)
def counted(ledger: str, error: str) -> None:
    with open(ledger, "a") as file:
        file.write("attempt\n")
    raise {"KeyError": KeyError, "ValueError": ValueError}[error](error)


@pytest.fixture
def process_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessBackend]:
    monkeypatch.setenv("TASKLOOM_BACKEND", "local-process")
    backend = get_backend("local-process")
    assert isinstance(backend, ProcessBackend)
    yield backend


@pytest.mark.parametrize(("error", "attempts"), [("KeyError", 1), ("ValueError", 4)])
def test_the_process_backend_retries_only_errors_in_retry_on(
    process_backend: ProcessBackend, tmp_path: Path, error: str, attempts: int
) -> None:
    ledger = tmp_path / "ledger"
    with Session():
        instance = counted.instance()
        assert instance.backend_name == "local-process"
        future = instance.start(str(ledger), error)
        with pytest.raises((KeyError, ValueError)) as raised:
            future.result(DEADLINE)
    assert type(raised.value).__name__ == error
    assert ledger.read_text().count("attempt") == attempts
