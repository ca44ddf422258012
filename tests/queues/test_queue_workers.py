"""Queues with real worker processes, on each store: the limits hold across workers, priorities order
the claims, ``--queue`` confines a worker, and a queue nobody serves keeps its depth.

"At once" and "starts" are measured from durable records, never from guesses: each execution's claim
time (``claimed_at``, written by the claim) and the time of its ``execution_completed`` event. Every
execution here is claimed exactly once (the tests check ``crashes`` is 0 and nothing pauses), so
``[claimed_at, completed]`` is the whole time it held a slot.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import queueapp
from processes import stop, wait_for

from taskloom import serde
from taskloom.children import child_id_for
from taskloom.executions import queue_execution
from taskloom.store import Store, open_store
from taskloom.store.sqlite import path_from_url

pytestmark = pytest.mark.integration
TARGET = "queueapp:job"


def start_worker(env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    """``taskloom worker queueapp`` in a process of its own; its log in TASKLOOM_HOME."""
    log = Path(env["TASKLOOM_HOME"]) / f"worker-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "queueapp", "--poll", "0.05", *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def rows(url: str, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """A query on the test's store itself (the claim times are not part of the Store protocol)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(path_from_url(url)) as conn:
            return conn.execute(sql.replace("%s", "?"), tuple(params)).fetchall()
    with psycopg.connect(url) as conn:
        return conn.execute(sql, tuple(params)).fetchall()  # type: ignore[arg-type]


def spans(url: str, queue: str) -> list[tuple[str, float, float, int]]:
    """``(id, claimed_at, completed_at, crashes)`` of the queue's finished executions."""
    found = rows(
        url,
        "SELECT x.id, x.claimed_at, e.ts, x.crashes FROM executions x JOIN events e ON e.execution_id = x.id "
        "WHERE x.queue = %s AND e.type = 'execution_completed' ORDER BY x.claimed_at",
        (queue,),
    )
    return [(i, float(claimed), float(done), int(crashes)) for i, claimed, done, crashes in found]


def most_at_once(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an end before a start at the same time)."""
    pairs = list(intervals)
    moments = sorted([(start, 1) for start, _ in pairs] + [(end, -1) for _, end in pairs])
    open_now = most = 0
    for _, change in moments:
        open_now += change
        most = max(most, open_now)
    return most


def most_starts_in_a_window(starts: list[float], seconds: float) -> int:
    """The most starts within any half-open window ``[t, t + seconds)``."""
    starts = sorted(starts)
    most, first = 0, 0
    for last, moment in enumerate(starts):
        while moment - starts[first] >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def all_finished(store: Store, ids: list[str]) -> bool:
    return all(record is not None and record.status == "completed" for record in map(store.get_execution, ids))


def run_through(env: dict[str, str], queue: str, count: int, seconds: float, workers: int) -> tuple[Store, list[str]]:
    """Queue ``count`` executions holding a worker ``seconds`` each on ``queue``, run them on ``workers``
    worker processes (4 slots each) until all completed; the store and the executions' ids."""
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    ids = [queue_execution(store, "job", TARGET, seconds, queue=queue) for _ in range(count)]
    started = [start_worker(env, "--concurrency", "4") for _ in range(workers)]
    try:
        wait_for(lambda: all_finished(store, ids), timeout=120, what=f"{count} executions of queue {queue}")
    finally:
        stop(*started)
    return store, ids


def test_three_workers_keep_a_queue_to_two_at_once_and_ten_starts_a_second(env: dict[str, str]) -> None:
    store, ids = run_through(env, "limited", 100, 0.15, workers=3)
    done = spans(env["TASKLOOM_DATABASE_URL"], "limited")
    assert sorted(i for i, *_ in done) == sorted(ids)
    assert {crashes for *_, crashes in done} == {0}
    assert most_at_once((claimed, completed) for _, claimed, completed, _ in done) <= 2
    assert most_starts_in_a_window([claimed for _, claimed, _, _ in done], 1.0) <= 10
    pids = {serde.loads(store.get_execution(i).output) for i in ids}  # type: ignore[union-attr]
    assert len(pids) >= 2, "the limits held across workers, not inside one"


def test_worker_concurrency_caps_each_worker(env: dict[str, str]) -> None:
    store, _ = run_through(env, "one_each", 8, 0.3, workers=2)
    by_worker: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for execution_id, claimed, completed, crashes in spans(env["TASKLOOM_DATABASE_URL"], "one_each"):
        assert crashes == 0
        by_worker[serde.loads(store.get_execution(execution_id).output)].append((claimed, completed))  # type: ignore[union-attr]
    assert [most_at_once(intervals) for intervals in by_worker.values()] == [1] * len(by_worker)


def test_executions_run_lowest_priority_first(default: Store, env: dict[str, str]) -> None:
    started = [
        (priority, queueapp.job.start(0.0, queue=queueapp.SINGLE_FILE, priority=priority))
        for priority in (5, 0, -3, 5, 2, -3)
    ]
    worker = start_worker(env)
    try:
        wait_for(lambda: all_finished(default, [h.execution_id for _, h in started]), timeout=60, what="6 executions")
    finally:
        stop(worker)
    order = [execution_id for execution_id, *_ in spans(env["TASKLOOM_DATABASE_URL"], "single_file")]
    expected = [h.execution_id for _, h in sorted(started, key=lambda pair: pair[0])]  # stable: oldest first
    assert order == expected


def test_a_worker_serves_only_its_queues_and_the_others_keep_their_depth(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    mine = [queue_execution(store, "job", TARGET, 0.0, queue="a") for _ in range(5)]
    theirs = [queue_execution(store, "job", TARGET, 0.0, queue="b") for _ in range(3)]
    nobodys = [queue_execution(store, "job", TARGET, 0.0, queue="nobody") for _ in range(2)]
    worker = start_worker(env, "--queue", "a", "--queue", "limited")
    try:
        wait_for(lambda: all_finished(store, mine), timeout=60, what="queue a's executions")
    finally:
        stop(worker)
    assert {store.get_execution(i).status for i in theirs + nobodys} == {"queued"}  # type: ignore[union-attr]
    listed = subprocess.run(
        [sys.executable, "-m", "taskloom", "queues", "--json"], env=env, capture_output=True, text=True, check=True
    )
    depth = {queue["name"]: (queue["queued"], queue["running"]) for queue in json.loads(listed.stdout)}
    assert depth["b"] == (3, 0) and depth["nobody"] == (2, 0)
    limits = {queue["name"]: queue for queue in json.loads(listed.stdout)}["limited"]  # the worker declared it
    assert (limits["concurrency"], limits["rate_limit"]) == (2, {"count": 10, "seconds": 1.0})
    text = subprocess.run(
        [sys.executable, "-m", "taskloom", "queues"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "nobody  queued 2  running 0  no limits" in text
    assert "limited  queued 0  running 0  concurrency 2, rate 10/1s" in text


def test_a_child_goes_to_its_parents_queue_where_the_parents_workers_run_it(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    parent = queue_execution(store, "parent_job", "queueapp:parent_job", 0.0, queue="a")
    worker = start_worker(env, "--queue", "a")  # serves "a" alone: a child on another queue would wait for ever
    try:
        wait_for(lambda: all_finished(store, [parent]), timeout=60, what="the parent, once its child ran on queue a")
    finally:
        stop(worker)
    child = store.get_execution(child_id_for(parent, "1"))
    assert child is not None and (child.queue, child.status) == ("a", "completed")


def test_taskloom_run_without_a_server_refuses_a_queue_and_runs_nothing(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "run", TARGET, "0", "--queue", "q"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "--queue and --priority queue the execution for workers: give --server URL" in done.stderr
    assert open_store(env["TASKLOOM_DATABASE_URL"]).list_executions() == []
