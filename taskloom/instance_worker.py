"""Instance workers: claim task instances queued by the remote backend, run them, report back.

A worker imports user modules by name (code is never uploaded to it) and runs the ``@task`` objects it
finds at their top level, each known by ``module:qualname`` of its function. It claims queued instances in
batches (as many as it has free slots), runs each on a thread of its own with the task's policy (retry,
timeout, fallback, rollback) and a :class:`~taskloom.TaskControl` whose progress, status and logs become
updates on the instance's session stream, and records each outcome (the result's JSON view, or the
exception's type and message) in batches too.

Threads, one job each:

- *claim loop*: claims while it has free slots; otherwise waits for a wake-up (PostgreSQL NOTIFY when
  instances are queued or slots free up, a local slot freeing up) or ``poll_seconds``.
- *listener*: blocks on the queue's notifications and wakes the claim loop.
- *flusher*: writes buffered updates and outcomes, one transaction per batch.
- *watcher*: every :data:`STOP_POLL_SECONDS`, reads the stop flags of what the worker runs (``instance.stop()``
  and ``future.cancel()`` land there through the server) and sets those instances' ``should_stop``;
  every third of the lease, renews the worker's leases; every
  :data:`~taskloom.store.instances.WORKER_HEARTBEAT_SECONDS`, registers the targets it serves again.

The worker registers its targets in the store before it claims anything and removes them when it stops,
so that the server refuses instances of a task that no worker serves instead of queueing them forever.

A worker that dies stops renewing its leases; once they expire, the next claim by any worker puts its
instances back in the queue and they run again from the start (instances are not durable steps: use a
workflow for work that must not repeat). ``stop()`` stops claiming and gives running instances
``grace_seconds`` to finish before putting them back in the queue.

``taskloom worker MODULE...`` runs one beside the execution worker, with the same settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from taskloom import masking, policy, serde
from taskloom.backends.pool import ElasticThreadPool
from taskloom.errors import TaskError
from taskloom.leases import new_owner
from taskloom.logs import current_origin, origin
from taskloom.runtime.control import LogRecord, TaskControl
from taskloom.settings import WorkerSettings
from taskloom.store import Store, default_store
from taskloom.store.instances import (
    WORKER_HEARTBEAT_SECONDS,
    ClaimedInstance,
    InstanceQueue,
    Outcome,
    Report,
    instance_queue_for,
)
from taskloom.task import Task

log = logging.getLogger("taskloom.instance_worker")

DEFAULT_CONCURRENCY = 8
#: the most instances one claim takes
MAX_CLAIM = 100
#: how often the stop flags of running instances are read
STOP_POLL_SECONDS = 0.1
#: how long buffered updates may wait to be batched with others before they are written
FLUSH_LINGER_SECONDS = 0.002
#: the longest traceback text kept with a failed instance's error
MAX_TRACEBACK_CHARS = 20_000


def task_target(task: Task[Any, Any]) -> str:
    """``module:qualname`` of the task's function: how workers and clients name a task."""
    return f"{task.fn.__module__}:{task.fn.__qualname__}"


def find_tasks(modules: Iterable[ModuleType]) -> dict[str, list[Task[Any, Any]]]:
    """Every Task at the top level of ``modules``, by target (copies made with ``with_options`` share one)."""
    found: dict[str, list[Task[Any, Any]]] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Task):
                tasks = found.setdefault(task_target(value), [])
                if all(value is not known for known in tasks):
                    tasks.append(value)
    return found


#: the same settings as the execution worker's, so one ``taskloom worker`` command configures both
InstanceWorkerSettings = WorkerSettings


@dataclass(slots=True)
class _Held:
    """An instance this worker claimed: its stop flag, and whether its function has returned."""

    claimed: ClaimedInstance
    stop: threading.Event = field(default_factory=threading.Event)
    returned: bool = False


class _Reporter:
    """The TaskControl reporter of one instance: its calls become buffered updates."""

    __slots__ = ("_claimed", "_worker")

    def __init__(self, worker: InstanceWorker, claimed: ClaimedInstance) -> None:
        self._worker = worker
        self._claimed = claimed

    def on_log(self, control: TaskControl, record: LogRecord) -> None:
        data = {
            "level": record.level,
            "message": record.message,
            "extra": serde.json_view(record.extra),
            "timestamp": record.timestamp,
        }
        self._worker._report(self._claimed, "log", data)

    def on_progress(self, control: TaskControl, progress: float, status: str | None) -> None:
        self._worker._report(self._claimed, "progress", {"progress": progress, "status": status})

    def on_status(self, control: TaskControl, status: str) -> None:
        self._worker._report(self._claimed, "status", {"status": status})


class InstanceWorker:
    """Claims and runs task instances of ``tasks`` (by target) until :meth:`stop`."""

    def __init__(
        self,
        tasks: dict[str, list[Task[Any, Any]]],
        settings: InstanceWorkerSettings | None = None,
        *,
        store: Store | None = None,
        worker_id: str | None = None,
    ) -> None:
        if not tasks:
            raise TaskError("the instance worker found no @task at the top level of its modules; nothing to run")
        self.tasks = tasks
        self.settings = settings or InstanceWorkerSettings(concurrency=DEFAULT_CONCURRENCY)
        self.queue: InstanceQueue = instance_queue_for(store or default_store())
        self.worker_id = worker_id or new_owner()
        self._targets = sorted(tasks)
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}  # claimed, outcome not written yet
        self._busy = 0  # functions running now
        self._idle = threading.Condition(self._lock)
        self._reports: list[Report] = []
        self._outcomes: list[Outcome] = []
        self._wake = threading.Event()  # the claim loop: claim again
        self._flush = threading.Event()  # the flusher: write what is buffered
        self._stopping = threading.Event()  # stop claiming
        self._done = threading.Event()  # the claim loop has drained: helper threads end
        self._pool = ElasticThreadPool("taskloom-instance-worker", core=self.settings.concurrency)
        self._threads: list[threading.Thread] = []
        self._abandoned = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start claiming in background threads; returns at once."""
        if self._threads:
            raise RuntimeError("this instance worker was started already")
        # Before anything says "running": from here on the server accepts instances of these targets.
        self.queue.register_worker(self.worker_id, self._targets)
        log.info("instance worker %s: running tasks %s", self.worker_id, ", ".join(self._targets))
        for target, name in (
            (self._claim_loop, "claim"),
            (self._listen_loop, "listen"),
            (self._flush_loop, "flush"),
            (self._watch_loop, "watch"),
        ):
            thread = threading.Thread(target=target, name=f"taskloom-instance-worker-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Stop claiming; running instances get ``grace_seconds`` to finish, then go back to the queue."""
        self._stopping.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker has stopped and written everything; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
            if thread.is_alive():
                return False
        return True

    @property
    def running(self) -> int:
        """How many instance functions are running now."""
        return self._busy

    # -- claiming ----------------------------------------------------------------------------------
    def _claim_loop(self) -> None:
        settings = self.settings
        while not self._stopping.is_set():
            free = settings.concurrency - self._busy
            if free <= 0:
                self._wait()
                continue
            limit = min(free, MAX_CLAIM)
            try:
                claimed = self.queue.claim_instances(self.worker_id, self._targets, limit, settings.lease_seconds)
            except Exception:
                log.exception("instance worker %s: claiming failed; retrying", self.worker_id)
                self._stopping.wait(settings.poll_seconds)
                continue
            for instance in claimed:
                self._launch(instance)
            if len(claimed) < limit:
                self._wait()
        self._drain()

    def _wait(self) -> None:
        self._wake.wait(self.settings.poll_seconds)
        self._wake.clear()

    def _listen_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.queue.wait_for_instances(self.settings.poll_seconds):
                    self._wake.set()
            except Exception:
                log.exception("instance worker %s: waiting for notifications failed", self.worker_id)
                self._stopping.wait(self.settings.poll_seconds)

    def _launch(self, claimed: ClaimedInstance) -> None:
        held = _Held(claimed)
        if claimed.stop_requested:
            held.stop.set()
        with self._lock:
            self._held[claimed.instance_id] = held
            self._busy += 1
        self._pool.submit(self._run, held)

    # -- running -----------------------------------------------------------------------------------
    def _run(self, held: _Held) -> None:
        # The scope outlives the policy's own, so the outcome written below is masked as well.
        with masking.secret_scope():
            outcome = self._outcome(held.claimed, held)
        with self._lock:
            held.returned = True
            self._busy -= 1
            self._outcomes.append(outcome)
            self._idle.notify_all()
        self._flush.set()
        self._wake.set()

    def _outcome(self, claimed: ClaimedInstance, held: _Held) -> Outcome:
        """Run the instance's function and say how it went (its JSON result, or its error's description)."""
        origin_token = None
        try:
            task = self._resolve(claimed)
            # The instance's log records name its task and id, as on the local backends (taskloom.logs).
            origin_token = current_origin.set(origin(task=task.name, instance_id=claimed.instance_id))
            arguments = json.loads(claimed.arguments)
            control = TaskControl(
                task.name, claimed.instance_id, reporter=_Reporter(self, claimed), stop_event=held.stop
            )
            args, kwargs = list(arguments.get("args", [])), dict(arguments.get("kwargs", {}))
            if task.is_async:
                value = asyncio.run(policy.call_async(task, tuple(args), kwargs, control=control))
            else:
                value = policy.call_sync(task, tuple(args), kwargs, control=control)
            result = _dumps(masking.mask_value(serde.json_view(value)))
            return Outcome(claimed.session_id, claimed.instance_id, "completed", result, None, f'{{"result":{result}}}')
        except BaseException as error:
            info = _dumps(masking.mask_value(_error_info(error, self.worker_id)))
            return Outcome(claimed.session_id, claimed.instance_id, "failed", None, info, f'{{"error":{info}}}')
        finally:
            if origin_token is not None:
                current_origin.reset(origin_token)

    def _resolve(self, claimed: ClaimedInstance) -> Task[Any, Any]:
        candidates = self.tasks.get(claimed.target, [])
        named = [task for task in candidates if task.name == claimed.task]
        if len(named) == 1 or (named and all(t.options == named[0].options for t in named)):
            return named[0]
        if len(candidates) == 1:
            return candidates[0]
        raise TaskError(
            f"task {claimed.task!r} ({claimed.target}): this worker has {len(candidates)} tasks of that function "
            "and cannot tell which one was meant; give them different names"
        )

    def _report(self, claimed: ClaimedInstance, kind: str, data: dict[str, Any]) -> None:
        report = Report(claimed.session_id, claimed.instance_id, kind, _dumps(data))
        with self._lock:
            reports = self._reports
            # Progress faster than the flusher writes it: only the latest value needs to reach the client.
            last = reports[-1] if reports else None
            if kind == "progress" and last is not None and (last.kind, last.instance_id) == (kind, claimed.instance_id):
                reports[-1] = report
                return
            reports.append(report)
        self._flush.set()

    # -- writing -----------------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        while not self._done.is_set():
            self._flush.wait(1.0)
            if self._done.is_set():
                break
            time.sleep(FLUSH_LINGER_SECONDS)
            self._flush.clear()
            self._write()
        self._write()

    def _write(self) -> bool:
        """Write buffered updates and outcomes in one transaction; True if nothing is left."""
        with self._lock:
            reports, self._reports = self._reports, []
            outcomes, self._outcomes = self._outcomes, []
        if not reports and not outcomes:
            return True
        try:
            accepted = self.queue.record(self.worker_id, reports, outcomes)
        except Exception:
            log.exception("instance worker %s: writing updates failed; retrying", self.worker_id)
            with self._lock:
                self._reports[:0] = reports
                self._outcomes[:0] = outcomes
            time.sleep(self.settings.poll_seconds)
            self._flush.set()
            return False
        with self._lock:
            for outcome in outcomes:
                self._held.pop(outcome.instance_id, None)
        for outcome in outcomes:
            if outcome.instance_id not in accepted:
                log.warning(
                    "instance worker %s: instance %s finished after its lease was lost (it was queued again); "
                    "its outcome was dropped",
                    self.worker_id,
                    outcome.instance_id,
                )
        return True

    # -- stop flags and leases ---------------------------------------------------------------------
    def _watch_loop(self) -> None:
        renew_every = self.settings.lease_seconds / 3
        next_renewal = time.monotonic() + renew_every
        next_heartbeat = time.monotonic() + WORKER_HEARTBEAT_SECONDS
        while not self._done.wait(STOP_POLL_SECONDS):
            if time.monotonic() >= next_heartbeat and not self._stopping.is_set():
                next_heartbeat = time.monotonic() + WORKER_HEARTBEAT_SECONDS
                try:
                    self.queue.register_worker(self.worker_id, self._targets)
                except Exception:
                    log.exception("instance worker %s: registering its targets failed; retrying", self.worker_id)
            with self._lock:
                held = dict(self._held)
            if not held:
                next_renewal = time.monotonic() + renew_every
                continue
            try:
                for instance_id in self.queue.stop_requests(self.worker_id):
                    found = held.get(instance_id)
                    if found is not None:
                        found.stop.set()
                if time.monotonic() >= next_renewal:
                    next_renewal = time.monotonic() + renew_every
                    self._renew(held)
            except Exception:
                log.exception("instance worker %s: reading stop flags or renewing leases failed", self.worker_id)

    def _renew(self, held: dict[str, _Held]) -> None:
        still_held = set(self.queue.renew_leases(self.worker_id, self.settings.lease_seconds))
        with self._lock:
            lost = [h for i, h in held.items() if i not in still_held and not h.returned and i in self._held]
        for instance in lost:
            log.warning(
                "instance worker %s: lost the lease of instance %s (it was queued again); asking it to stop",
                self.worker_id,
                instance.claimed.instance_id,
            )
            instance.stop.set()

    # -- shutdown ----------------------------------------------------------------------------------
    def _drain(self) -> None:
        try:  # first: no new instance should be queued for a worker that is going away
            self.queue.unregister_worker(self.worker_id)
        except Exception:
            log.exception("instance worker %s: could not remove its targets; they expire by themselves", self.worker_id)
        deadline = time.monotonic() + self.settings.grace_seconds
        with self._idle:
            while self._busy and time.monotonic() < deadline:
                self._idle.wait(max(0.0, min(1.0, deadline - time.monotonic())))
            unfinished = [i for i, h in self._held.items() if not h.returned]
        for _ in range(3):
            if self._write():
                break
        if unfinished:
            log.warning(
                "instance worker %s: %d instance(s) still running after %gs; they go back to the queue",
                self.worker_id,
                len(unfinished),
                self.settings.grace_seconds,
            )
            try:
                self.queue.release_instances(self.worker_id, unfinished)
            except Exception:
                log.exception(
                    "instance worker %s: could not put instances back; their leases will expire", self.worker_id
                )
        self._abandoned = bool(unfinished)
        self._done.set()
        self._flush.set()
        self.queue.close()  # ends a listener's wait at once
        log.info("instance worker %s: stopped", self.worker_id)

    @property
    def abandoned(self) -> bool:
        """True after a stop that left instance functions running (they were put back in the queue)."""
        return self._abandoned


def _dumps(value: Any) -> str:
    """JSON text of a JSON view; non-finite floats become strings (JSON has none)."""
    try:
        return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(value), ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _error_info(error: BaseException, worker_id: str) -> dict[str, Any]:
    """What a client needs to raise the error again: type, module, message, args when JSON, traceback."""
    kind = type(error)
    info: dict[str, Any] = {"type": kind.__qualname__, "module": kind.__module__, "message": str(error)}
    args = error.args
    if all(isinstance(arg, str | int | float | bool) or arg is None for arg in args):
        info["args"] = list(args)
    text = "".join(traceback.format_exception(error)).rstrip()
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    info["traceback"] = text
    info["worker"] = worker_id
    return info
