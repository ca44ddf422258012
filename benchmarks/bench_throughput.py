"""How many durable steps per second one store sustains, with 1 to N processes stepping at once.

Each process runs one workflow of ``--steps`` sequential durable steps (a real ``@workflow`` of real
``@task`` steps with a small JSON-like result each), all started together against one store: a throwaway
PostgreSQL from ``tests/pgserver.py`` (and, with ``--store sqlite`` or ``both``, one SQLite file). It
prints the aggregate steps per second for each number of processes, and the store's size per million
steps (events, executions and their indexes), the figures ``docs/scaling.md`` extrapolates from.

Run: ``.venv/bin/python benchmarks/bench_throughput.py`` (``--processes 1,2,4,8 --steps 2000``)
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from taskloom import WorkflowExecutionContext, task, workflow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


@task
def record(n: int) -> dict[str, object]:
    return {"n": n, "status": "ok", "rows": 120}


@workflow
async def stepping(ctx: WorkflowExecutionContext[int]) -> int:
    for n in range(ctx.input):
        await record(n)
    return ctx.input


def step(url: str, steps: int, start_at: float, execution_id: str) -> None:
    """One process: wait for the common start, run the workflow."""
    os.environ["TASKLOOM_DATABASE_URL"] = url
    while time.time() < start_at:
        time.sleep(0.001)
    stepping.run(steps, execution_id=execution_id)


def round_of(url: str, processes: int, steps: int, tag: str) -> float:
    """Aggregate steps per second of ``processes`` processes stepping at once."""
    start_at = time.time() + 2.0  # every process has imported taskloom and opened the store by then
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--step", url, str(steps), str(start_at), f"{tag}-{processes}-{k}"],
            env={**os.environ, "PYTHONPATH": str(HERE)},
        )
        for k in range(processes)
    ]
    for child in children:
        if child.wait(timeout=900) != 0:
            raise SystemExit(f"a stepping process failed (exit {child.returncode})")
    return processes * steps / (time.time() - start_at)


def size_of(url: str) -> float:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return float(sum(p.stat().st_size for p in path.parent.iterdir() if p.name.startswith(path.name)))
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM ANALYZE")
        row = db.execute("SELECT pg_total_relation_size('events') + pg_total_relation_size('executions')").fetchone()
    return float(row[0]) if row else 0.0


def server_cpu_seconds(postmaster: int) -> float:
    """CPU time of a PostgreSQL server so far: the postmaster, its live children, and its reaped ones
    (a backend's time joins the postmaster's cutime/cstime when its connection ends)."""
    tick = os.sysconf("SC_CLK_TCK")

    def times(pid: int, with_children: bool) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        own = int(fields[11]) + int(fields[12])
        return (own + (int(fields[13]) + int(fields[14]) if with_children else 0)) / tick

    total = times(postmaster, True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == postmaster:
                total += times(int(entry.name), False)
    return total


def measure(kind: str, url: str, counts: list[int], steps: int, postmaster: int | None = None) -> None:
    total = 0
    for processes in counts:
        cpu_before = server_cpu_seconds(postmaster) if postmaster else 0.0
        rate = round_of(url, processes, steps, kind)
        total += processes * steps
        line = f"  {kind}: {processes} process(es): {rate:8,.0f} steps/s ({rate / processes:6,.0f} per process)"
        if postmaster:
            per_step = (server_cpu_seconds(postmaster) - cpu_before) / (processes * steps)
            line += f"; server CPU {per_step * 1e6:,.0f} us/step (one core: {1 / per_step:,.0f} steps/s)"
        print(line)
    size = size_of(url)
    print(
        f"  {kind}: {size / total * 1e6 / 2**20:,.0f} MiB per million steps ({total:,} steps, {size / 2**20:,.1f} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="postgres")
    parser.add_argument("--step", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        url, steps, start_at, execution_id = args.step
        step(url, int(steps), float(start_at), execution_id)
        return
    counts = [int(n) for n in args.processes.split(",")]
    print(f"{os.cpu_count()} CPU(s); each process runs {args.steps:,} sequential durable steps")
    if args.store in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            measure("sqlite", f"sqlite:///{Path(tmp) / 'throughput.db'}", counts, args.steps)
    if args.store in ("postgres", "both"):
        from pgserver import find_bindir, running_postgres  # type: ignore[import-not-found]

        if find_bindir() is None:
            print("postgres: skipped, no PostgreSQL server binaries (Debian: apt-get install postgresql)")
            return
        with running_postgres() as server:
            postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
            measure("postgres", server.url(), counts, args.steps, postmaster)


if __name__ == "__main__":
    main()
