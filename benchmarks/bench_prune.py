"""Pruning 1,000,000 events while a workflow runs: throughput, and the longest stall it causes a step.

For each store (SQLite, and a throwaway PostgreSQL from ``tests/pgserver.py`` when its binaries are
installed) the benchmark writes ``--executions`` finished executions with ``--events-per`` events each
(default 20,000 x 50 = 1,000,000 events) straight into the tables, then starts a real workflow in another
process: one durable step after another, each step recording when its body ran. After a baseline of a
few seconds it prunes everything (``taskloom.retention.prune``) while the workflow keeps stepping, then
stops it. It prints the pruning throughput (events per second), the longest transaction pruning held,
and the longest gap between two steps of the workflow while pruning ran against the longest gap
before it (the floor: what the machine alone does to a step). Target (issue 13): the stall pruning
adds, the longest gap while pruning, under 50 ms.

Run: ``.venv/bin/python benchmarks/bench_prune.py``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.retention import CHUNK_ROWS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test suite's throwaway PostgreSQL
sys.path.insert(0, str(HERE))
TARGET_MS = 50.0
BASELINE_SECONDS = 3.0

_ticks: list[float] = []


@task
def tick(n: int, stop_file: str) -> bool:
    """One durable step: notes when it ran; says whether the benchmark asked the workflow to stop."""
    _ticks.append(time.time())
    return os.path.exists(stop_file)


@workflow
async def stepping(ctx: WorkflowExecutionContext[str]) -> int:
    n = 0
    while not await tick(n, ctx.input):
        n += 1
    return n


def drive(url: str, folder: Path) -> None:
    """The workflow's process: step until the stop file appears, then write every step's time."""
    os.environ["TASKLOOM_DATABASE_URL"] = url
    try:
        stepping.run(str(folder / "stop"))
    finally:
        (folder / "ticks.json").write_text(json.dumps(_ticks))


def longest_gap(ticks: list[float], start: float, end: float) -> float:
    inside = [t for t in ticks if start <= t <= end]
    return max((b - a for a, b in itertools.pairwise(inside)), default=0.0)


def run(kind: str, url: str, folder: Path, executions: int, events_per: int, chunk: int) -> bool:
    from bench_history import fill_postgres, fill_sqlite

    from taskloom.retention import prune
    from taskloom.store import open_store

    started = time.perf_counter()
    if kind == "sqlite":
        fill_sqlite(Path(url.removeprefix("sqlite:///")), executions, events_per, ("completed", "failed", "cancelled"))
    else:
        fill_postgres(url, executions, events_per, ("completed", "failed", "cancelled"))
    print(
        f"{kind}: {executions:,} finished executions, {executions * events_per:,} events, "
        f"filled in {time.perf_counter() - started:.0f} s"
    )
    env = {**os.environ, "TASKLOOM_DATABASE_URL": url, "PYTHONPATH": str(HERE)}
    driver = subprocess.Popen([sys.executable, __file__, "--drive", url, str(folder)], env=env)
    try:
        time.sleep(BASELINE_SECONDS + 2)  # the workflow warms up, then steps for the baseline window
        base_end = time.time()
        store = open_store(url)
        try:
            prune_start = time.time()
            report = prune(store, 1.0, chunk_rows=chunk)  # all filled is older than a second; the workflow runs
            prune_end = time.time()
        finally:
            store.close()
        (folder / "stop").touch()
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    ticks = json.loads((folder / "ticks.json").read_text())
    baseline = longest_gap(ticks, base_end - BASELINE_SECONDS, base_end)
    during = longest_gap(ticks, prune_start, prune_end)
    steps_during = sum(1 for t in ticks if prune_start <= t <= prune_end)
    took = prune_end - prune_start
    print(
        f"  pruned {report.executions:,} executions and {report.events:,} events in {took:.1f} s: "
        f"{report.events / took:,.0f} events/s, {report.transactions:,} transactions, the longest "
        f"{report.longest_transaction_seconds * 1e3:.1f} ms"
    )
    print(
        f"  the running workflow: {steps_during:,} steps while pruning; longest gap between two steps "
        f"{during * 1e3:.1f} ms while pruning, {baseline * 1e3:.1f} ms before (floor); target < {TARGET_MS:g} ms: "
        f"{'met' if during * 1e3 < TARGET_MS else 'NOT met'}"
    )
    return during * 1e3 < TARGET_MS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=20_000)
    parser.add_argument("--events-per", type=int, default=50)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--chunk", type=int, default=CHUNK_ROWS, help=f"rows per transaction (default {CHUNK_ROWS})")
    parser.add_argument("--drive", nargs=2, metavar=("URL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive(args.drive[0], Path(args.drive[1]))
        return
    if args.store in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run(
                "sqlite", f"sqlite:///{Path(tmp) / 'prune.db'}", Path(tmp), args.executions, args.events_per, args.chunk
            )
    if args.store in ("postgres", "both"):
        from pgserver import find_bindir, running_postgres  # type: ignore[import-not-found]

        if find_bindir() is None:
            print("postgres: skipped, no PostgreSQL server binaries (Debian: apt-get install postgresql)")
            return
        with tempfile.TemporaryDirectory() as tmp, running_postgres() as server:
            run("postgres", server.url(), Path(tmp), args.executions, args.events_per, args.chunk)


if __name__ == "__main__":
    main()
