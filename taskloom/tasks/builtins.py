"""Built-in steps whose results are recorded, so a replay sees the same values: time, randomness, ids,
durable sleep, pause and receive. Outside a workflow they simply do the thing."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from taskloom.context import current_scope
from taskloom.errors import WorkflowError

T = TypeVar("T")


async def _ready(value: T) -> T:
    return value


def _value_step(name: str, compute: Callable[[], T]) -> Awaitable[T]:
    scope = current_scope.get()
    if scope is None:
        return _ready(compute())
    return scope.run.run_value_step(scope.next_id(), name, compute)


def now() -> Awaitable[dt.datetime]:
    """The current time, timezone-aware UTC; recorded in a workflow."""
    return _value_step("now", lambda: dt.datetime.now(dt.UTC))


def uuid4() -> Awaitable[uuid.UUID]:
    """A random UUID; recorded in a workflow."""
    return _value_step("uuid4", uuid.uuid4)


def choice(options: Sequence[T]) -> Awaitable[T]:
    """A random element of ``options``; recorded in a workflow."""
    if not isinstance(options, Sequence) or len(options) == 0:
        raise ValueError(f"choice(): options must be a non-empty sequence, got {options!r}")
    return _value_step("choice", lambda: random.choice(options))


def randint(a: int, b: int) -> Awaitable[int]:
    """A random integer N with a <= N <= b; recorded in a workflow."""
    if not isinstance(a, int) or not isinstance(b, int) or a > b:
        raise ValueError(f"randint(): need integers a <= b, got a={a!r}, b={b!r}")
    return _value_step("randint", lambda: random.randint(a, b))


def randrange(start: int, stop: int | None = None, step: int = 1) -> Awaitable[int]:
    """Like ``random.randrange``; recorded in a workflow."""
    for argument, value in (("start", start), ("stop", stop), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"randrange(): {argument} must be an integer, got {value!r}")
    if step == 0:
        raise ValueError("randrange(): step must not be zero")
    if not (range(start) if stop is None else range(start, stop, step)):
        raise ValueError(f"randrange(): empty range for start={start!r}, stop={stop!r}, step={step!r}")
    if stop is None:
        return _value_step("randrange", lambda: random.randrange(start))
    return _value_step("randrange", lambda: random.randrange(start, stop, step))


def _seconds(value: float | dt.timedelta, where: str) -> float:
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:  # NaN too
        raise ValueError(f"{where} must be seconds >= 0 or a timedelta, got {value!r}")
    return float(seconds)


def sleep(duration: float | dt.timedelta) -> Awaitable[None]:
    """A durable timer: in a workflow, a re-run after a crash sleeps only what is left."""
    seconds = _seconds(duration, "sleep(): duration")
    scope = current_scope.get()
    if scope is None:
        return asyncio.sleep(seconds)
    return scope.run.run_sleep_step(scope.next_id(), float(seconds))


def pause(name: str, timeout: float | dt.timedelta | None = None, *, output: Any = None) -> Awaitable[Any]:
    """Suspend the workflow here until it is continued; returns the value it is continued with.

    ``wf.resume(execution_id, input)`` continues it with ``input``; ``wf.run(execution_id=...)`` with
    None, as in Flux. ``output`` is recorded as the value of the pause's ``execution_paused`` event (in
    ``ctx.events``, ``taskloom events`` and the HTTP API), so whoever continues it sees what they are
    approving; it is stored like a task's result (same types, secrets masked).

    The pause is raised as a ``BaseException`` so that ``except Exception`` in the workflow cannot
    swallow it. With ``timeout``, a pause not continued in time raises ``TaskTimeoutError`` (also a
    ``TimeoutError``) in the workflow instead: workers wake such an execution by themselves at its
    deadline, and ``wf.run(execution_id=...)`` does after it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"pause(): name must be a non-empty string, got {name!r}")
    seconds = None if timeout is None else _seconds(timeout, f"pause({name!r}): timeout")
    scope = current_scope.get()
    if scope is None:
        raise WorkflowError(f"pause({name!r}) only works inside a running workflow")
    return scope.run.run_pause_step(scope.next_id(), name, seconds, output)


def receive(topic: str, timeout: float | dt.timedelta | None = None) -> Awaitable[Any]:
    """The oldest unread message of ``topic`` sent to this execution (``taskloom.send``); recorded.

    Waits durably when there is none: the execution pauses (its pause named ``receive:<topic>``) and is
    continued when a message arrives, by a worker, or by ``wf.run(execution_id=...)``. With ``timeout``,
    returns None once that much time passed without a message (a deadline that survives restarts).
    Messages sent before the workflow asks are kept; each is received once; replays return the same.
    """
    from taskloom.messages import check_topic, receive_step

    check_topic(topic, "receive()")
    seconds = None if timeout is None else _seconds(timeout, f"receive({topic!r}): timeout")
    scope = current_scope.get()
    if scope is None:
        raise WorkflowError(f"receive({topic!r}) only works inside a running workflow")
    return receive_step(scope.run, scope.next_id(), topic, seconds)
