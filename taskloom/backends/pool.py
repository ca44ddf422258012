"""A shared thread pool that grows when work would otherwise wait, and shrinks when idle.

Instances may block for minutes (sleeps, I/O, waiting on other instances), so a fixed-size pool could
starve: every thread busy, the next instance never starting. Here a job goes to an idle thread if there is
one; otherwise to a new thread while the pool is below its ``core`` size; otherwise it queues, and a
watchdog adds a thread for every job that has waited longer than ``max_wait`` seconds. So a job never
waits long for a thread, yet a burst of short jobs is served by a few reused threads instead of one new
thread each (thread creation, not the work, would dominate: see ``benchmarks/bench_instances.py``).
Concurrency is bounded where it should be, by each task's ``max_parallel`` in its session. Threads retire
after ``idle_seconds`` without work.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

#: how long a thread waits for new work before it ends
IDLE_SECONDS = 30.0
#: how long a queued job may wait for a busy thread before the pool adds one for it
MAX_WAIT_SECONDS = 0.05

_logger = logging.getLogger("taskloom.backends")

Job = tuple[Callable[..., Any], tuple[Any, ...]]


class ElasticThreadPool:
    """Runs ``fn(*args)`` on a pooled thread; see the module docstring for when threads are added."""

    def __init__(
        self,
        name: str,
        *,
        core: int | None = None,
        idle_seconds: float = IDLE_SECONDS,
        max_wait: float = MAX_WAIT_SECONDS,
    ) -> None:
        self.name = name
        self.core = core if core is not None else max(8, 4 * (os.cpu_count() or 1))
        self.idle_seconds = idle_seconds
        self.max_wait = max_wait
        self._lock = threading.Lock()
        # Jobs for threads: both those handed to idle threads and the backlog (any thread takes any job).
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._idle = 0  # threads waiting on _jobs, minus jobs already handed to them
        self._backlog: deque[float] = deque()  # when each queued job (not handed to anyone) arrived
        self._threads = 0
        self._watchdog: threading.Thread | None = None
        self._numbers = itertools.count(1)

    @property
    def thread_count(self) -> int:
        return self._threads

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put((fn, args))
                return
            if self._threads >= self.core:
                self._backlog.append(time.monotonic())
                self._jobs.put((fn, args))
                if self._watchdog is None:
                    self._watchdog = self._thread(self._watch, "watchdog")
                    self._watchdog.start()
                return
            self._threads += 1
        self._start_worker((fn, args))

    def _thread(self, target: Callable[..., None], suffix: str, *args: Any) -> threading.Thread:
        return threading.Thread(target=target, args=args, name=f"{self.name}-{suffix}", daemon=True)

    def _start_worker(self, job: Job) -> None:
        try:
            self._thread(self._work, str(next(self._numbers)), job).start()
        except BaseException:
            with self._lock:
                self._threads -= 1
            raise

    def _work(self, job: Job | None) -> None:
        while job is not None:
            fn, args = job
            try:
                fn(*args)
            except BaseException:
                _logger.exception("job %r in thread pool %r raised", fn, self.name)
            del fn, args, job  # do not keep the last job's objects alive while idle
            job = self._next_job()

    def _next_job(self) -> Job | None:
        with self._lock:
            if self._backlog:
                self._backlog.popleft()
                return self._jobs.get_nowait()
            self._idle += 1
        try:
            return self._jobs.get(timeout=self.idle_seconds)
        except queue.Empty:
            with self._lock:
                try:  # a job handed to this thread just as it timed out
                    return self._jobs.get_nowait()
                except queue.Empty:
                    self._idle -= 1
                    self._threads -= 1
                    return None

    def _watch(self) -> None:
        """While jobs are queued, add a thread for each one that has waited longer than ``max_wait``."""
        while True:
            time.sleep(self.max_wait / 2)
            with self._lock:
                if not self._backlog:
                    self._watchdog = None
                    return
                too_old = time.monotonic() - self.max_wait
                jobs: list[Job] = []
                while self._backlog and self._backlog[0] <= too_old:
                    self._backlog.popleft()
                    jobs.append(self._jobs.get_nowait())
                self._threads += len(jobs)
            for index, job in enumerate(jobs):
                try:
                    self._start_worker(job)
                except BaseException:  # no thread to be had now: queue the rest again, retry next tick
                    _logger.exception("thread pool %r could not start a thread", self.name)
                    with self._lock:
                        self._threads -= len(jobs) - index - 1
                        for unstarted in jobs[index:]:
                            self._backlog.append(time.monotonic())
                            self._jobs.put(unstarted)
                    break


_shared: ElasticThreadPool | None = None
_shared_lock = threading.Lock()


def shared_thread_pool() -> ElasticThreadPool:
    """The one pool of this process's instance threads (local tasks, and waits on worker processes)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = ElasticThreadPool("taskloom-instance")
    return _shared
