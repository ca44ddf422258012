"""Retry, timeout, fallback and rollback around a task's attempts; used by every mode.

The order is the SPEC's: attempt, then retries after ``retry_delay * retry_backoff**k`` (capped by
``retry_max_delay``, shortened by ``retry_jitter``: :meth:`TaskOptions.retry_delays`) for errors in
``retry_on`` (any other error skips the retries); when all fail,
the fallback (same arguments) gives the result; without a fallback, or when it fails too, the rollback
(same arguments) runs and the task fails with the last error. A timeout counts as a failed attempt.

The policy is written once, as a generator of *turns* (an attempt, a wait, a handler call) that is told
how each turn went. Two small drivers perform the turns: ``call_sync`` in the caller's thread (direct
calls, instances) and ``call_async`` on the event loop (workflow steps and async tasks, never blocking
the loop). So the two worlds cannot drift apart.

Both drivers run the task inside a secret scope (:mod:`taskloom.masking`): the secrets its arguments
resolve are masked as ``***`` in its logs and statuses while it runs, and in the result it returns and
the error it raises (an exception is masked in place, so its identity and traceback stay). A task's
result never carries a secret it received; code that needs the value uses it inside the task.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator

from taskloom import masking, thread_hops
from taskloom.errors import TaskTimeoutError
from taskloom.signatures import is_awaitable, is_coroutine_function
from taskloom.task_running import inside_task as inside_task  # re-exported: callers ask the policy
from taskloom.task_running import mark_inside_task as mark_inside_task
from taskloom.task_running import running
from taskloom.task_running import unmark_inside_task as unmark_inside_task
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Executor
    from typing import Any, Protocol

    from taskloom.cache import CachedCall
    from taskloom.task import Task
    from taskloom.thread_hops import ThreadLane
else:
    from taskloom.typing_free import Any, Protocol

# The marker of a task run (taskloom.task_running), under the names the policy and its callers use.
_running = running


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


# -- the policy, once ----------------------------------------------------------------------------------
# The turns are plain classes, not dataclasses: making a dataclass compiles its methods, about 1 ms of every
# process's start each (issue 12's one-step process), and nothing compares, prints or copies a turn.
class Attempt:
    """Call the task's function (attempt ``number``, counting from 1)."""

    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number


class Wait:
    """Sleep before the next retry."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class CallHandler:
    """Call the fallback or the rollback with the task's own arguments."""

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler


Turn = Attempt | Wait | CallHandler
Turns = Generator[Turn, Any, Any]
#: calls a sync function with its arguments so that task calls it makes are plain calls, not steps
#: (inside a workflow: ``replay.plain_call``)
Plain = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]


def _turns(
    task: Task[Any, Any],
    control: Any,
    observer: AttemptObserver | None,
    cached: CachedCall | None = None,
    retried: tuple[int, float] | None = None,
) -> Turns:
    """The SPEC's failure order. The driver sends each turn's value back, or throws its error in.

    With ``cached`` (``cache=True``), a successful attempt's result is cached before it is returned; a
    failure to cache it fails the call (it is not an attempt's failure: no retry, no fallback). What the
    fallback gives is not cached, so the next call tries the function again.

    ``retried`` (a workflow step whose run died while it waited to retry: the attempt that failed and
    when its recorded wait ends) goes on with the next attempt, after only what is left of that wait,
    so a crash neither restarts the count of attempts nor sleeps a recorded delay again.
    """
    delays = task.options.retry_delays()
    attempt = 1
    if retried is not None:
        attempt = retried[0] + 1
        left = retried[1] - time.time()
        if left > 0:
            yield Wait(left)
    while True:
        try:
            value = yield Attempt(attempt)
        except Exception as failed:
            error: BaseException = failed
        else:
            if cached is not None:
                cached.put(value)
            return value
        if attempt > len(delays) or not _should_retry(control) or not task.options.retries(error):
            break  # out of retries, asked to stop, or an error outside ``retry_on``: fails at once
        delay = delays[attempt - 1]
        if observer is not None:
            observer.on_retry(attempt, error, delay)
        if delay > 0:
            yield Wait(delay)
        attempt += 1
    options = task.options
    if options.fallback is not None:
        if observer is not None:
            observer.on_fallback(error)
        try:
            return (yield CallHandler(options.fallback))
        except Exception as fallback_error:
            fallback_error.__cause__ = error
            error = fallback_error
    if options.rollback is not None:
        if observer is not None:
            observer.on_rollback(error)
        try:
            yield CallHandler(options.rollback)
        except Exception as rollback_error:
            _attach_rollback_failure(error, rollback_error, task)
    raise error


def _next(turns: Turns, value: Any, error: BaseException | None) -> Turn:
    return turns.throw(error) if error is not None else turns.send(value)


def _drive(turns: Turns, perform: Callable[[Turn], Any]) -> Any:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            turn = _next(turns, value, error)
        except StopIteration as done:
            return done.value
        value, error = None, None
        try:
            value = perform(turn)
        except Exception as failed:
            error = failed


async def _adrive(turns: Turns, perform: Callable[[Turn], Awaitable[Any]], error: BaseException | None = None) -> Any:
    """Drive ``turns``; ``error`` is the failure of the turn already performed (see ``_call_async``)."""
    value: Any = None
    while True:
        try:
            turn = _next(turns, value, error)
        except StopIteration as done:
            return done.value
        value, error = None, None
        try:
            value = await perform(turn)
        except Exception as failed:
            error = failed


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
    """Run a sync task's function under its policy in this thread (direct calls, instances).

    A ``cache=True`` task whose result for these arguments is cached returns it without running.
    """
    cached = _cached_call(task, args, kwargs) if task.options.cache else None
    if cached is not None:
        value = cached.lookup()
        if value is not cached.MISS:
            return value
    token = _running.set(True)
    try:
        if not task.options.secret_requests and not masking.active_secrets():
            return _call_sync(task, args, kwargs, control, observer, cached)  # no secret to mask: the fast path
        with masking.secret_scope():
            try:
                return masking.mask_value(_call_sync(task, args, kwargs, control, observer, cached))
            except BaseException as error:
                masking.mask_value(error)
                raise
    finally:
        _running.reset(token)


def _call_sync(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    control: Any,
    observer: AttemptObserver | None,
    cached: CachedCall | None,
) -> Any:
    call_args, call_kwargs = task.prepare_arguments(args, kwargs, control)
    timeout = task.options.effective_timeout

    def perform(turn: Turn) -> Any:
        if isinstance(turn, Attempt):
            return run_sync_with_timeout(
                lambda: task.fn(*call_args, **call_kwargs),
                timeout,
                lambda: _timeout_error(task, turn.number, timeout or 0),
            )
        if isinstance(turn, Wait):
            time.sleep(turn.seconds)
            return None
        result = turn.handler(*args, **kwargs)
        if not is_awaitable(result):
            return result
        import asyncio  # not at the top: ``import taskloom`` does not load asyncio (loop_free)

        return asyncio.run(_await(result))

    return _drive(_turns(task, control, observer, cached), perform)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _cached_call(task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> CachedCall | None:
    """The cache entry of a ``cache=True`` task's call (:mod:`taskloom.cache`, imported by the first one)."""
    from taskloom.cache import CachedCall

    return CachedCall.open(task, args, kwargs)


# -- asynchronous --------------------------------------------------------------------------------------
def run_in_thread(
    fn: Callable[[], Any], *, executor: Executor | ThreadLane | None, isolated: bool
) -> asyncio.Future[Any]:
    """Run a sync function off the event loop, in a copy of the caller's context.

    ``isolated`` (used when the attempt has a timeout) gives it a daemon thread of its own, so an attempt
    that never returns cannot occupy a pool slot or hold up interpreter exit. Otherwise it goes to
    ``executor``: a workflow run's :class:`~taskloom.thread_hops.ThreadLane` (the process's reused
    threads, outcomes handed back to the loop in batches), the loop's default (``None``), or any other
    ``Executor``. See :mod:`taskloom.thread_hops`.
    """
    return thread_hops.run_in_thread(fn, executor=executor, isolated=isolated)


def call_async(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    control: Any = None,
    observer: AttemptObserver | None = None,
    executor: Executor | ThreadLane | None = None,
    plain: Plain | None = None,
    inline: bool = False,
    retried: tuple[int, float] | None = None,
    mark_running: bool = True,
) -> Coroutine[Any, Any, Any]:
    """Run any task (sync in a thread, async on the loop) under its policy, without blocking the loop: a
    coroutine to await.

    ``plain`` calls a sync function (``plain(fn, args, kwargs)``) so that, inside a workflow, task calls it
    makes run as plain calls in its thread instead of becoming steps. ``inline`` runs a sync function on the loop's
    own thread: the caller passes it only when nothing else is on the loop to be blocked.

    A task that asks for no secret, run where none is active, needs no secret scope of its own: a task it
    calls that has secrets masks what it returns or raises in its own scope (the path of most steps). Such
    a call, not cached either, is the policy's coroutine itself, one frame less on every step's path.

    A ``cache=True`` task whose result for these arguments is cached returns it without running; in a
    workflow the caller records it as the step's outcome like any result, so replay does not change.
    ``retried`` is a re-run step's recorded retry, to go on from (see ``_turns``). ``mark_running=False``:
    the caller's context is already marked as inside a task (:func:`mark_inside_task`: a workflow run's).
    """
    options = task.options
    scoped = bool(options.secret_requests or masking.active_secrets())
    if options.cache or scoped:
        return _call_async_scoped(
            task, args, kwargs, control, observer, executor, plain, inline, retried, scoped, mark_running
        )
    return _call_async(task, args, kwargs, control, observer, executor, plain, inline, None, retried, mark_running)


async def _call_async_scoped(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    control: Any,
    observer: AttemptObserver | None,
    executor: Executor | ThreadLane | None,
    plain: Plain | None,
    inline: bool,
    retried: tuple[int, float] | None,
    scoped: bool,
    mark_running: bool,
) -> Any:
    """:func:`call_async` of a cached task, or one that needs a secret scope (``scoped``): the cache
    looked up first, then the call, in a secret scope of its own when ``scoped``."""
    cached = _cached_call(task, args, kwargs) if task.options.cache else None
    if cached is not None:
        value = cached.lookup()
        if value is not cached.MISS:
            return value
    if not scoped:
        return await _call_async(
            task, args, kwargs, control, observer, executor, plain, inline, cached, retried, mark_running
        )
    with masking.secret_scope():
        try:
            return masking.mask_value(
                await _call_async(
                    task, args, kwargs, control, observer, executor, plain, inline, cached, retried, mark_running
                )
            )
        except BaseException as error:
            masking.mask_value(error)
            raise


async def _call_async(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    control: Any,
    observer: AttemptObserver | None,
    executor: Executor | ThreadLane | None,
    plain: Plain | None,
    inline: bool,
    cached: CachedCall | None,
    retried: tuple[int, float] | None = None,
    running: bool = False,
) -> Any:
    """The policy of one call; ``running``: mark the call as running a task (``inside_task``) while it
    lasts (a workflow run marks its whole context instead: :func:`mark_inside_task`)."""
    token = _running.set(True) if running else None
    try:
        call_args, call_kwargs = task.prepare_arguments(args, kwargs, control)
        call = _Call(task, call_args, call_kwargs, args, kwargs, executor, plain, inline)
        if retried is not None:
            return await _adrive(_turns(task, control, observer, cached, retried), call.perform)
        # The first turn of a fresh call is always attempt 1, and most attempts succeed: made here directly,
        # the policy's generator is built only when it fails (a step's cost is mostly this path).
        try:
            value = await call.attempt(1)
        except Exception as failed:
            turns = _turns(task, control, observer, cached, None)
            next(turns)  # Attempt(1): performed above
            return await _adrive(turns, call.perform, failed)
        if cached is not None:
            cached.put(value)
        return value
    finally:
        if token is not None:
            _running.reset(token)


class _Call:
    """One call of a task under its policy: its function with the prepared arguments, the handlers' own
    arguments, and where sync code runs. An object rather than closures over them: it is made on every
    step's path, a map's items included, and one object is less to allocate (and to collect) than three
    closures and their cells."""

    __slots__ = ("args", "call_args", "call_kwargs", "executor", "inline", "kwargs", "plain", "task", "timeout")

    def __init__(
        self,
        task: Task[Any, Any],
        call_args: tuple[Any, ...],
        call_kwargs: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        executor: Executor | ThreadLane | None,
        plain: Plain | None,
        inline: bool,
    ) -> None:
        self.task, self.call_args, self.call_kwargs = task, call_args, call_kwargs
        self.args, self.kwargs = args, kwargs
        self.executor, self.plain, self.inline = executor, plain, inline
        self.timeout = task.options.effective_timeout

    def off_the_loop(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, isolated: bool = False
    ) -> asyncio.Future[Any]:
        plain = self.plain
        job = (
            functools.partial(plain, fn, args, kwargs) if plain is not None else functools.partial(fn, *args, **kwargs)
        )
        return run_in_thread(job, executor=self.executor, isolated=isolated)

    async def attempt(self, number: int) -> Any:
        task, timeout = self.task, self.timeout
        if task.is_async:
            awaitable = task.fn(*self.call_args, **self.call_kwargs)
        elif self.inline and not timeout:
            plain = self.plain
            if plain is not None:
                return plain(task.fn, self.call_args, self.call_kwargs)
            return task.fn(*self.call_args, **self.call_kwargs)
        else:
            awaitable = self.off_the_loop(task.fn, self.call_args, self.call_kwargs, isolated=bool(timeout))
        if not timeout:
            return await awaitable
        import asyncio

        try:
            return await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            raise _timeout_error(task, number, timeout) from None

    async def perform(self, turn: Turn) -> Any:
        if isinstance(turn, Attempt):
            return await self.attempt(turn.number)
        if isinstance(turn, Wait):
            import asyncio

            await asyncio.sleep(turn.seconds)
            return None
        handler = turn.handler
        if is_coroutine_function(handler):
            return await handler(*self.args, **self.kwargs)
        result = await self.off_the_loop(handler, self.args, self.kwargs)
        return await result if is_awaitable(result) else result
