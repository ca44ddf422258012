"""The ``remote`` backend: instances run on instance workers, through ``taskloom server``.

Selected by ``TASKLOOM_BACKEND=remote``, with ``TASKLOOM_SERVER_URL`` and the API token
(``TASKLOOM_API_TOKEN`` or the server's token file, as for :class:`~taskloom.client.TaskloomClient`).
The same user code runs as with the local backend; what differs:

- **Code is not sent.** A worker (``taskloom worker MODULE...``) imports the task's
  module and finds the task by ``module:qualname`` of its function, so a task must be defined at the top
  level of a module the worker imports. A task defined in a script run as ``python script.py`` is named
  after the script (``script:fn``): start the worker with that module name, and guard the script's own code
  with ``if __name__ == "__main__":``.
- **The worker's task object runs**, with its options (retry, timeout, fallback, rollback). A copy made with
  ``with_options`` is found by its ``name`` among the module's top-level tasks, so define such copies at
  module level (with a name of their own) rather than at the call. Inside a running instance there is no
  session: a task that starts instances of its own needs a ``with Session():`` of its own.
- **Values travel as JSON** (the server never unpickles what a client sends). Arguments must be JSON values:
  ``str``, ``int``, ``float`` (finite), ``bool``, ``None``, lists (tuples arrive as lists) and dicts with
  string keys; anything else fails the instance at once with a :class:`~taskloom.errors.TaskError` naming the
  task and the argument. A result comes back as its JSON view (:func:`taskloom.serde.json_view`: a datetime
  as ISO text, a dataclass as a dict, ...). A failure is raised again as the task's own exception type
  when that is a builtin exception or a class of a module this process has imported (with the worker's
  traceback as a note); otherwise as a ``TaskError`` naming the type and message.
- **max_parallel holds across workers.** The session admits instances as with every backend, and the
  workers' claims count running instances per (session, task) as well.
- **Live updates.** Progress, status text and logs are replayed on the instance's TaskControl here (so
  the future and any TaskControlHandler of this process see them) as they arrive on one stream per
  session. ``instance.stop()`` and ``future.cancel()`` go to the server; the worker sees them within a
  fraction of a second.
- **A worker that dies** has its instances run again by another worker once its lease expires.
- **No worker for the task.** The server refuses to queue an instance whose task no running worker
  serves (workers register the tasks they imported). Workers and clients are often started together, so
  the backend does not fail such an instance at once: it logs a warning on the instance's TaskControl
  (naming the ``taskloom worker MODULE`` command), keeps the future pending and offers the start again
  every :data:`NO_WORKER_RETRY_SECONDS` for up to :data:`NO_WORKER_WAIT_SECONDS`; then the future fails
  with a :class:`~taskloom.errors.TaskError` carrying the server's message. Other tasks of the same batch
  are queued meanwhile. An instance that a worker serves but nobody claims (all workers busy) stays
  queued, and its future logs a warning after :data:`UNCLAIMED_WARNING_SECONDS`.

Starts made within :data:`LINGER_SECONDS` of each other go to the server in one request; stop and cancel
requests follow in order.
"""

from __future__ import annotations

import builtins
import inspect
import logging
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloom.errors import BackendError, TaskCancelledError, TaskError, TaskloomError
from taskloom.runtime.instance import InstanceRun

if TYPE_CHECKING:
    from taskloom.client import TaskloomClient
    from taskloom.task import Task

log = logging.getLogger("taskloom.backends.remote")

#: how long the sender waits after a start for more starts to send with it
LINGER_SECONDS = 0.002
#: most instances per POST /instances
MAX_STARTS_PER_REQUEST = 1000
#: how long a session's update stream may stay unreachable before its instances fail
GIVE_UP_SECONDS = 60.0
#: attempts at sending one batch of starts (repeating a batch is safe: ids already queued are ignored)
SEND_ATTEMPTS = 3
#: how long an instance may wait in the server's queue before its future logs that no worker took it
UNCLAIMED_WARNING_SECONDS = 10.0
#: nesting depth beyond which an argument is refused
MAX_DEPTH = 100
#: how long a start whose task no worker serves is offered again before its future fails
NO_WORKER_WAIT_SECONDS = 10.0
#: how often such a start is offered again
NO_WORKER_RETRY_SECONDS = 0.5

Start = tuple["InstanceRun", dict[str, Any]]


@dataclass(slots=True)
class _Unserved:
    """Starts the server refused because no worker serves their task (one target), until ``deadline``."""

    batch: list[Start]
    deadline: float


@dataclass(slots=True)
class _Remote:
    """One instance handed to the server, until its outcome arrives."""

    run: InstanceRun
    session_id: str
    begun: bool = False
    queued_at: float = field(default_factory=time.monotonic)
    warned: bool = False


class RemoteBackend:
    """Sends instances to the server and follows each session's updates on one background thread."""

    name = "remote"

    def __init__(self, client: TaskloomClient | None = None) -> None:
        if client is None:
            from taskloom.client import TaskloomClient

            client = TaskloomClient()
        self._client = client
        self._lock = threading.Lock()
        self._outbox: list[Start] = []
        self._actions: dict[str, str] = {}  # instance id -> "stop" | "cancel", sent after the starts
        self._remotes: dict[str, _Remote] = {}
        self._session_counts: dict[str, int] = {}  # session id -> unsettled instances
        self._followers: dict[str, threading.Event] = {}  # session id -> wakes its follower thread
        self._last_seq: dict[str, int] = {}
        self._unserved: list[_Unserved] = []  # starts waiting for a worker of their task
        self._wake = threading.Event()
        self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name="taskloom-remote-sender", daemon=True)
        self._sender.start()
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch_loop, name="taskloom-remote-watch", daemon=True)
        self._watcher.start()

    def __repr__(self) -> str:
        return f"<RemoteBackend {self._client.url}>"

    # -- the Backend protocol ----------------------------------------------------------------------
    def check_start(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Called by ``instance.start()`` before anything is admitted: bad arguments raise right there."""
        check_arguments(task, args, kwargs)
        remote_target(task)

    def submit(self, run: InstanceRun) -> None:
        start = start_request(run)  # refuses bad arguments before anything is sent
        remote = _Remote(run, run.session.id)
        with self._lock:
            if self._closed:
                raise TaskError(f"task {run.task.name!r}: the remote backend is closed (the interpreter is exiting)")
            self._remotes[run.instance_id] = remote
            self._session_counts[remote.session_id] = self._session_counts.get(remote.session_id, 0) + 1
            self._outbox.append((run, start))
        self._wake.set()
        run.on_stop(lambda: self._request_stop(run))

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake.set()
        self._closing.set()
        self._client.close()

    # -- sending -----------------------------------------------------------------------------------
    def _request_stop(self, run: InstanceRun) -> None:
        action = "cancel" if run.cancelled else "stop"
        with self._lock:
            if self._actions.get(run.instance_id) != "cancel":
                self._actions[run.instance_id] = action
        self._wake.set()

    def _send_loop(self) -> None:
        while True:
            self._wake.wait(NO_WORKER_RETRY_SECONDS if self._unserved else None)
            time.sleep(LINGER_SECONDS)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                outbox, self._outbox = self._outbox, []
                actions, self._actions = self._actions, {}
                unserved, self._unserved = self._unserved, []
            for index in range(0, len(outbox), MAX_STARTS_PER_REQUEST):
                self._send_starts(outbox[index : index + MAX_STARTS_PER_REQUEST])
            for waiting in unserved:
                self._send_starts(waiting.batch, waiting.deadline)
            for instance_id, action in actions.items():
                self._send_action(instance_id, action)

    def _send_starts(self, batch: list[Start], no_worker_deadline: float | None = None) -> None:
        error: Exception | None = None
        for attempt in range(SEND_ATTEMPTS):
            try:
                self._client.start_instances([start for _, start in batch])
            except BackendError as refused:  # no worker serves a task of the batch: nothing was queued
                self._wait_for_worker(batch, refused, no_worker_deadline)
                return
            except Exception as failure:
                error = failure
                time.sleep(0.1 * 2**attempt)
            else:
                error = None
                break
        if error is not None:
            for run, _ in batch:
                if self._forget(run.instance_id) is not None:
                    run.fail(TaskError(f"task {run.task.name!r}: could not queue the instance on the server: {error}"))
            return
        for session_id in dict.fromkeys(start["session_id"] for _, start in batch):
            self._follow(session_id)

    def _wait_for_worker(self, batch: list[Start], refused: BackendError, deadline: float | None) -> None:
        """Offer the starts of a refused batch again later, per task, until a worker serves it or time is up."""
        targets = list(dict.fromkeys(start["target"] for _, start in batch))
        if len(targets) > 1:  # queue the served tasks now; only the unserved ones wait
            for target in targets:
                self._send_starts([item for item in batch if item[1]["target"] == target], deadline)
            return
        waiting: list[Start] = []
        for run, start in batch:
            if run.cancelled:  # never queued, so nothing to cancel on the server: close the run here
                if self._forget(run.instance_id) is not None:
                    run.begin()  # False for a cancelled run, which settles it and frees its slot
            elif run.instance_id in self._remotes:
                waiting.append((run, start))
        if not waiting:
            return
        now = time.monotonic()
        if deadline is None:
            deadline = now + NO_WORKER_WAIT_SECONDS
            message = f"{refused}; waiting up to {NO_WORKER_WAIT_SECONDS:g}s for such a worker to start"
            log.warning("%s", message)
            for run, _ in waiting:
                remote = self._remotes.get(run.instance_id)
                if remote is not None:
                    remote.warned = True  # this warning says more than the unclaimed one would
                try:
                    run.control.log(message, "warning")
                except Exception:
                    log.exception("could not log on instance %s", run.instance_id)
        elif now >= deadline:
            for run, _ in waiting:
                if self._forget(run.instance_id) is not None:
                    run.fail(TaskError(f"task {run.task.name!r}: {refused} (waited {NO_WORKER_WAIT_SECONDS:g}s)"))
            return
        with self._lock:
            self._unserved.append(_Unserved(waiting, deadline))

    def _send_action(self, instance_id: str, action: str) -> None:
        try:
            if action == "cancel":
                self._client.cancel_instance(instance_id)
            else:
                self._client.stop_instance(instance_id)
        except TaskError:  # finished meanwhile (409), or never queued (its start failed)
            pass
        except Exception as error:
            log.warning("could not send %s of task instance %s to the server: %s", action, instance_id, error)

    # -- following a session -----------------------------------------------------------------------
    def _follow(self, session_id: str) -> None:
        """Make sure one thread follows the session's updates."""
        with self._lock:
            wake = self._followers.get(session_id)
            if wake is not None or self._closed:
                if wake is not None:
                    wake.set()  # new instances: look again now rather than after a back-off
                return
            wake = self._followers[session_id] = threading.Event()
        name = f"taskloom-remote-{session_id[:8]}"
        threading.Thread(target=self._follow_loop, args=(session_id, wake), name=name, daemon=True).start()

    def _follow_loop(self, session_id: str, wake: threading.Event) -> None:
        backoff = 0.0
        failing_since: float | None = None
        while True:
            error: Exception | None = None
            try:
                for batch in self._client.session_updates(session_id, after=self._last_seq.get(session_id, 0)):
                    for update in batch:
                        self._apply(update)
                    self._last_seq[session_id] = int(batch[-1]["seq"])
                    backoff, failing_since = 0.0, None
            except Exception as failure:
                error = failure
            with self._lock:
                if self._closed or not self._session_counts.get(session_id):
                    del self._followers[session_id]
                    return
            if error is not None:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > GIVE_UP_SECONDS:
                    self._fail_session(session_id, error)
                    failing_since = None
                else:
                    log.warning("following session %s on the server failed (%s); retrying", session_id, error)
            # The stream ended (or broke) with instances still unsettled: their starts may still be on
            # their way to the server. Look again soon, a little later each time.
            wake.wait(backoff)
            wake.clear()
            backoff = min(max(0.01, backoff * 2), 1.0)

    def _watch_loop(self) -> None:
        """Tell the caller when an instance sits in the queue with no worker taking it (a common set-up
        mistake: no `taskloom worker` runs for the task's module), instead of a silent wait."""
        while not self._closing.wait(min(1.0, UNCLAIMED_WARNING_SECONDS / 4)):
            now = time.monotonic()
            with self._lock:
                waiting = [
                    r
                    for r in self._remotes.values()
                    if not r.begun and not r.warned and now - r.queued_at >= UNCLAIMED_WARNING_SECONDS
                ]
                for remote in waiting:
                    remote.warned = True
            for remote in waiting:
                run = remote.run
                message = (
                    f"task {run.task.name!r} (instance {run.instance_id}) has waited "
                    f"{now - remote.queued_at:.0f}s in the server's queue: no worker has taken it. Workers may "
                    f"all be busy, or none runs `taskloom worker {remote_target(run.task).split(':')[0]}` "
                    "against this server's database"
                )
                log.warning("%s", message)
                try:
                    run.control.log(message, "warning")
                except Exception:
                    log.exception("could not log on instance %s", run.instance_id)

    def _fail_session(self, session_id: str, error: Exception) -> None:
        with self._lock:
            remotes = [r for r in self._remotes.values() if r.session_id == session_id]
        for remote in remotes:
            if self._forget(remote.run.instance_id) is not None:
                remote.run.fail(
                    TaskError(
                        f"task {remote.run.task.name!r}: lost touch with the server for {GIVE_UP_SECONDS:g}s "
                        f"({error}); the instance's outcome is unknown"
                    )
                )

    def _forget(self, instance_id: str) -> _Remote | None:
        with self._lock:
            remote = self._remotes.pop(instance_id, None)
            if remote is not None:
                left = self._session_counts[remote.session_id] - 1
                if left:
                    self._session_counts[remote.session_id] = left
                else:
                    del self._session_counts[remote.session_id]
        return remote

    def _apply(self, update: dict[str, Any]) -> None:
        remote = self._remotes.get(update["instance_id"])
        if remote is None:
            return
        kind, data, run = update["kind"], update["data"], remote.run
        try:
            if kind == "running":
                self._begin(remote)
            elif kind == "progress":
                run.control.update_progress(data["progress"], data.get("status"))
            elif kind == "status":
                run.control.update_status(data["status"])
            elif kind == "log":
                run.control.log(data["message"], data["level"], **dict(data.get("extra") or {}))
            elif kind in ("completed", "failed", "cancelled"):
                self._settle(remote, kind, data)
        except Exception:
            log.exception("could not apply update %r of task instance %s", kind, run.instance_id)

    def _begin(self, remote: _Remote) -> None:
        """Mark the future running (unless it was cancelled first: then it stays so until the outcome)."""
        if remote.begun or remote.run.cancelled or self._remotes.get(remote.run.instance_id) is not remote:
            return
        remote.begun = True
        if not remote.run.begin():  # cancelled just now: begin() has settled it, the run is over
            self._forget(remote.run.instance_id)

    def _settle(self, remote: _Remote, kind: str, data: dict[str, Any]) -> None:
        run = remote.run
        if self._forget(run.instance_id) is None:  # settled already (its start failed, or it was cancelled)
            return
        if not remote.begun and not run.cancelled and not run.begin():
            return  # cancelled just now: begin() has settled it
        if kind == "completed":
            run.succeed(data.get("result"))
        elif kind == "failed":
            run.fail(rebuild_error(run.task.name, run.instance_id, data.get("error") or {}))
        else:
            run.fail(TaskCancelledError(f"task {run.task.name!r} (instance {run.instance_id}) was cancelled"))


# -- what goes to the server ------------------------------------------------------------------------------
def check_arguments(task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A TaskError naming the task and argument when an argument cannot travel as JSON."""
    parameters = [
        p
        for p in task.signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ][1 if task.wants_control else 0 :]
    for index, value in enumerate(args):
        named = f"{parameters[index].name!r}" if index < len(parameters) else f"#{index + 1}"
        _check_argument(task, f"argument {named}", value)
    for name, value in kwargs.items():
        _check_argument(task, f"argument {name!r}", value)


def start_request(run: InstanceRun) -> dict[str, Any]:
    """The JSON that queues ``run``; a TaskError if its task or arguments cannot run remotely."""
    task = run.task
    check_arguments(task, run.args, run.kwargs)
    session = run.session
    return {
        "instance_id": run.instance_id,
        "session_id": session.id,
        "session_name": session.name,
        "task": task.name,
        "target": remote_target(task),
        "max_parallel": task.options.max_parallel,
        "args": list(run.args),
        "kwargs": dict(run.kwargs),
    }


def remote_target(task: Task[Any, Any]) -> str:
    """``module:qualname`` a worker imports to find ``task``; a TaskError if no worker could."""
    fn = task.fn
    module, qualname = str(getattr(fn, "__module__", "") or ""), str(getattr(fn, "__qualname__", "") or "")
    if module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        path = getattr(main, "__file__", None)
        module = spec.name if spec is not None and spec.name else Path(path).stem if path else ""
    parts = [*module.split("."), *qualname.split(".")]
    if not module or not qualname or not all(part.isidentifier() for part in parts):
        raise TaskError(
            f"task {task.name!r} cannot run on a remote worker: workers import a task by module and name, so "
            f"define it at the top level of a module (found {module or '?'}:{qualname or '?'})"
        )
    return f"{module}:{qualname}"


def _check_argument(task: Task[Any, Any], what: str, value: Any) -> None:
    problem = _json_problem(value, 0)
    if problem is not None:
        raise TaskError(
            f"task {task.name!r}: {what} cannot be sent to a remote worker: it contains {problem}. With "
            "TASKLOOM_BACKEND=remote, instance arguments travel as JSON: str, int, float, bool, None, lists and "
            "dicts with string keys (tuples arrive as lists); pass an id or a path for anything else"
        )


def _json_problem(value: Any, depth: int) -> str | None:
    """What in ``value`` is not a JSON value (None if it all is)."""
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"the float {value!r} (JSON has no NaN or infinity)"
    if depth >= MAX_DEPTH:
        return f"values nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, list | tuple):
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a dict key of type {type(key).__qualname__} ({key!r})"
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return f"a value of type {type(value).__qualname__}"


# -- what comes back ----------------------------------------------------------------------------------------
def rebuild_error(task_name: str, instance_id: str, info: dict[str, Any]) -> BaseException:
    """The exception a worker reported, as its own type when this process knows it, else a TaskError."""
    type_name, module = str(info.get("type", "Exception")), str(info.get("module", "builtins"))
    message = str(info.get("message", ""))
    error: BaseException | None = None
    cls = _known_exception_class(module, type_name)
    if cls is not None:
        args = info.get("args")
        try:
            error = cls(*args) if isinstance(args, list) else cls(message)
        except Exception:
            try:
                error = cls(message)
            except Exception:
                error = None
    if error is None:
        shown = type_name if module == "builtins" else f"{module}.{type_name}"
        error = TaskError(f"task {task_name!r} (instance {instance_id}) failed on a worker: {shown}: {message}")
    trace = info.get("traceback")
    if trace:
        error.add_note(f"(raised on taskloom worker {info.get('worker', '?')}:\n{trace})")
    return error


def _known_exception_class(module: str, qualname: str) -> type[Exception] | None:
    """The class ``module.qualname`` if it is an Exception class of a module already imported here.

    Only modules already imported: a worker's report never makes this process import anything.
    """
    target: Any = builtins if module == "builtins" else sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if isinstance(target, type) and issubclass(target, Exception):
        return target
    return None


def create_backend() -> RemoteBackend:
    try:
        return RemoteBackend()
    except BackendError:
        raise
    except TaskloomError as error:  # no server URL, no token: say which setting is missing
        raise BackendError(f"TASKLOOM_BACKEND=remote: {error}") from None
