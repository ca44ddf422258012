"""Retry, timeout, fallback and rollback around a task's attempts; used by every mode.

The order is the SPEC's: attempt, then retries after ``retry_delay * retry_backoff**k``; when all fail,
the fallback (same arguments) gives the result; without a fallback, or when it fails too, the rollback
(same arguments) runs and the task fails with the last error. A timeout counts as a failed attempt.

There are two drivers with one shape: ``call_sync`` (direct calls and instances, in the caller's thread)
and ``call_async`` (workflow steps and async tasks, never blocking the event loop). Keep them in step.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Protocol

from taskloom.errors import TaskTimeoutError

if TYPE_CHECKING:
    from taskloom.task import Task


class AttemptObserver(Protocol):
    """Told about each turn of the policy, so a workflow step can record it in the event log."""

    def on_retry(self, attempt: int, error: BaseException, delay: float) -> None: ...

    def on_fallback(self, error: BaseException) -> None: ...

    def on_rollback(self, error: BaseException) -> None: ...


def _timeout_error(task: Task[Any, Any], attempt: int, timeout: float) -> TaskTimeoutError:
    return TaskTimeoutError(f"task {task.name!r}: attempt {attempt} timed out after {timeout:g}s")


def _should_retry(control: Any) -> bool:
    return not (control is not None and control.should_stop)


def _attach_rollback_failure(error: BaseException, rollback_error: BaseException, task: Task[Any, Any]) -> None:
    error.add_note(f"rollback of task {task.name!r} also failed: {type(rollback_error).__name__}: {rollback_error}")


# -- synchronous ---------------------------------------------------------------------------------------
def run_sync_with_timeout(fn: Callable[[], Any], timeout: float | None, on_timeout: Callable[[], BaseException]) -> Any:
    """Call ``fn``; with a timeout, in a daemon thread so a hung attempt cannot hold the caller."""
    if not timeout:
        return fn()
    box: dict[str, Any] = {}
    done = threading.Event()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"] = context.run(fn)
        except BaseException as error:
            box["error"] = error
        finally:
            done.set()

    threading.Thread(target=target, name="taskloom-attempt", daemon=True).start()
    if not done.wait(timeout):
        raise on_timeout()
    if "error" in box:
        raise box["error"]
    return box["value"]


def call_sync(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    control: Any = None,
    observer: AttemptObserver | None = None,
) -> Any:
    """Run a sync task's function under its policy in this thread (direct calls, instances)."""
    call_args, call_kwargs = task.prepare_arguments(args, kwargs, control)
    options = task.options
    delays = options.retry_delays()
    timeout = options.effective_timeout
    last_error: BaseException | None = None
    for attempt in range(1, len(delays) + 2):
        try:
            return run_sync_with_timeout(
                lambda: task.fn(*call_args, **call_kwargs),
                timeout,
                lambda attempt=attempt: _timeout_error(task, attempt, timeout or 0),  # type: ignore[misc]
            )
        except Exception as error:
            last_error = error
            if attempt > len(delays) or not _should_retry(control):
                break
            delay = delays[attempt - 1]
            if observer is not None:
                observer.on_retry(attempt, error, delay)
            if delay > 0:
                time.sleep(delay)
    assert last_error is not None
    return _recover_sync(task, args, kwargs, last_error, observer)


def _call_handler_sync(handler: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = handler(*args, **kwargs)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _recover_sync(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: BaseException,
    observer: AttemptObserver | None,
) -> Any:
    options = task.options
    if options.fallback is not None:
        if observer is not None:
            observer.on_fallback(error)
        try:
            return _call_handler_sync(options.fallback, args, kwargs)
        except Exception as fallback_error:
            fallback_error.__cause__ = error
            error = fallback_error
    if options.rollback is not None:
        if observer is not None:
            observer.on_rollback(error)
        try:
            _call_handler_sync(options.rollback, args, kwargs)
        except Exception as rollback_error:
            _attach_rollback_failure(error, rollback_error, task)
    raise error


# -- asynchronous --------------------------------------------------------------------------------------
def run_in_thread(fn: Callable[[], Any], *, executor: Executor | None, isolated: bool) -> asyncio.Future[Any]:
    """Run a sync function off the event loop.

    ``isolated`` (used when the attempt has a timeout) gives it a daemon thread of its own, so an attempt
    that never returns cannot occupy a pool slot or hold up interpreter exit.
    """
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    if not isolated:
        return loop.run_in_executor(executor, context.run, fn)
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> None:
        try:
            value = context.run(fn)
        except BaseException as error:
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, None, error)
            return
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(settle, value, None)
            except RuntimeError:  # loop closed between the check and the call
                pass

    threading.Thread(target=target, name="taskloom-attempt", daemon=True).start()
    return future


async def call_async(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    control: Any = None,
    observer: AttemptObserver | None = None,
    executor: Executor | None = None,
    plain: Callable[[Callable[[], Any]], Callable[[], Any]] | None = None,
    inline: bool = False,
) -> Any:
    """Run any task (sync in a thread, async on the loop) under its policy, without blocking the loop.

    ``plain`` wraps the call of a sync function so that, inside a workflow, task calls it makes run as
    plain calls in its thread instead of becoming steps. ``inline`` runs a sync function on the loop's
    own thread: the caller passes it only when nothing else is on the loop to be blocked.
    """
    call_args, call_kwargs = task.prepare_arguments(args, kwargs, control)
    options = task.options
    delays = options.retry_delays()
    timeout = options.effective_timeout
    last_error: BaseException | None = None
    for attempt in range(1, len(delays) + 2):
        try:
            if task.is_async:
                awaitable = task.fn(*call_args, **call_kwargs)
            else:
                call: Callable[[], Any] = lambda: task.fn(*call_args, **call_kwargs)  # noqa: E731
                if inline and not timeout:
                    return (plain(call) if plain else call)()
                awaitable = run_in_thread(plain(call) if plain else call, executor=executor, isolated=bool(timeout))
            if timeout:
                try:
                    return await asyncio.wait_for(awaitable, timeout)
                except TimeoutError:
                    raise _timeout_error(task, attempt, timeout) from None
            return await awaitable
        except Exception as error:
            last_error = error
            if attempt > len(delays) or not _should_retry(control):
                break
            delay = delays[attempt - 1]
            if observer is not None:
                observer.on_retry(attempt, error, delay)
            if delay > 0:
                await asyncio.sleep(delay)
    assert last_error is not None
    return await _recover_async(task, args, kwargs, last_error, observer, executor, plain)


async def _call_handler_async(
    handler: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    executor: Executor | None,
    plain: Callable[[Callable[[], Any]], Callable[[], Any]] | None,
) -> Any:
    if inspect.iscoroutinefunction(handler):
        return await handler(*args, **kwargs)
    call: Callable[[], Any] = lambda: handler(*args, **kwargs)  # noqa: E731
    result = await run_in_thread(plain(call) if plain else call, executor=executor, isolated=False)
    if inspect.isawaitable(result):
        return await result
    return result


async def _recover_async(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: BaseException,
    observer: AttemptObserver | None,
    executor: Executor | None,
    plain: Callable[[Callable[[], Any]], Callable[[], Any]] | None,
) -> Any:
    options = task.options
    if options.fallback is not None:
        if observer is not None:
            observer.on_fallback(error)
        try:
            return await _call_handler_async(options.fallback, args, kwargs, executor, plain)
        except Exception as fallback_error:
            fallback_error.__cause__ = error
            error = fallback_error
    if options.rollback is not None:
        if observer is not None:
            observer.on_rollback(error)
        try:
            await _call_handler_async(options.rollback, args, kwargs, executor, plain)
        except Exception as rollback_error:
            _attach_rollback_failure(error, rollback_error, task)
    raise error
