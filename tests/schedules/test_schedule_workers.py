"""Schedules ticked by real ``taskloom worker`` processes on PostgreSQL: exactly one execution per tick,
none missing, while three workers tick at once and one of them is killed (issue 10's proof)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from processes import kill, stop, wait_for

from taskloom import serde
from taskloom.store import ExecutionStatus, Store, open_store

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
HERE = Path(__file__).parent
RUN_SECONDS = 10.0


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = Path(env["TASKLOOM_HOME"]) / f"worker-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "schedapp", "--poll", "0.05", "--lease", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def logs(env: dict[str, str]) -> str:
    return "".join(p.read_text() for p in sorted(Path(env["TASKLOOM_HOME"]).glob("worker-*.log")))


def scheduled(store: Store) -> list[tuple[str, float, str]]:
    """``(execution id, tick, status)`` of every execution the schedule started, its tick read from the
    execution's start (not from its id, so a second execution for one tick would show)."""
    found = []
    for record in store.list_executions(workflow="every_second", limit=10_000):
        started = store.load_events(record.id)[0]
        found.append((record.id, float(started.data["scheduled_at"]), record.status))
    return found


def test_three_workers_start_each_tick_of_a_one_second_schedule_once_though_one_is_killed(
    pg_fresh_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": pg_fresh_url,
        "TASKLOOM_HOME": str(tmp_path),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    store = open_store(pg_fresh_url)
    workers = [start_worker(env) for _ in range(3)]
    try:
        wait_for(lambda: logs(env).count("running workflows") == 3, timeout=60, what="three workers")
        schedule = store.get_schedule("every_second")
        assert schedule is not None
        begin = schedule.created_at  # registered by the first worker; its first tick is the next second
        started = time.time()
        wait_for(lambda: time.time() >= started + RUN_SECONDS / 2, timeout=RUN_SECONDS, what="half the run")
        os.kill(workers[0].pid, signal.SIGKILL)  # mid-way: what it was ticking or running moves on
        workers[0].wait()
        wait_for(lambda: time.time() >= started + RUN_SECONDS, timeout=RUN_SECONDS, what="the end of the run")
        expected = set(range(int(begin) + 1, int(time.time())))  # every whole second since registration
        try:  # the survivors finish every tick up to the end (the killed one's lease runs out in 1 s)
            wait_for(lambda: expected <= completed(store), timeout=30, what="the ticks to complete")
        except AssertionError:
            pass  # reported below, with the ticks missing
    finally:
        stop(*workers[1:])
        kill(*workers)
    found = scheduled(store)
    store.close()
    per_tick = collections.Counter(t for _, t, _ in found)
    seen = {int(t) for t in per_tick}
    duplicated = {t: n for t, n in per_tick.items() if n > 1}
    print(f"ticks expected {len(expected)}, seen {len(seen & expected)}, duplicated {len(duplicated)}")
    assert not duplicated, f"ticks started more than once: {duplicated}"
    assert expected <= seen, f"missing ticks: {sorted(expected - seen)}"
    assert expected <= completed_in(found), f"not run: {sorted(expected - completed_in(found))}"
    odd = sorted(t for t in per_tick if t != int(t) or t <= begin)
    assert not odd, f"only whole seconds after registration ({begin}): {odd}"
    assert len(expected) >= RUN_SECONDS - 1
    # The workers really competed: ticks were started by more than one of them.
    starters = [p for p in Path(env["TASKLOOM_HOME"]).glob("worker-*.log") if "started execution" in p.read_text()]
    assert len(starters) >= 2, "one worker started every tick: the race was not tested"
    # Each execution read its own tick (ctx.scheduled_at) in the worker process that ran it.
    outputs = {execution_id: output for execution_id, output in outputs_of(pg_fresh_url, found)}
    for execution_id, moment, status in found:
        if status == ExecutionStatus.COMPLETED:
            assert outputs[execution_id] == datetime.fromtimestamp(moment, UTC).isoformat()


def completed_in(found: list[tuple[str, float, str]]) -> set[int]:
    return {int(t) for _, t, status in found if status == ExecutionStatus.COMPLETED}


def completed(store: Store) -> set[int]:
    return completed_in(scheduled(store))


def outputs_of(url: str, found: list[tuple[str, float, str]]) -> list[tuple[str, object]]:
    store = open_store(url)
    try:
        return [(i, serde.loads(store.get_execution(i).output)) for i, _, _ in found]  # type: ignore[union-attr]
    finally:
        store.close()
