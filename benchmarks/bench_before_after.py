"""Per-step cost of this tree against an earlier commit, measured in the same run on the same machine.

Every run now holds a lease and every step write is fenced by it (issue 7); this measures what that
costs per step. The earlier commit (default 9b4b78d, the last one before leases on embedded runs) is
exported with ``git archive`` into a temporary folder; both trees then run the same workload in fresh
processes, alternating, so that drift of a shared machine hits both alike. The floor is one raw
``sqlite3`` INSERT + COMMIT per step, measured in each process.

Run: ``.venv/bin/python benchmarks/bench_before_after.py [--base REV] [--rounds N]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = "9b4b78d"
STEPS = 1000

#: Runs in a fresh process with PYTHONPATH at one tree; prints one JSON line of per-step seconds.
WORKLOAD = f"""
import json, os, sqlite3, sys, tempfile, time
from pathlib import Path

STEPS = {STEPS}
tmp = Path(tempfile.mkdtemp())
os.environ["TASKLOOM_DATABASE_URL"] = f"sqlite:///{{tmp / 'bench.db'}}"
os.environ["TASKLOOM_HOME"] = str(tmp)
import taskloom
from taskloom import task, workflow

def floor():
    conn = sqlite3.connect(tmp / f"floor-{{time.perf_counter_ns()}}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, execution TEXT, step TEXT, value BLOB)")
    start = time.perf_counter()
    for i in range(STEPS):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (execution, step, value) VALUES (?, ?, ?)", ("e", str(i), b"x"))
        conn.execute("COMMIT")
    return (time.perf_counter() - start) / STEPS

@task
def sync_step(i):
    return i

@task
async def async_step(i):
    return i

@workflow
async def sequential_sync(ctx):
    for i in range(STEPS):
        await sync_step(i)

@workflow
async def sequential_async(ctx):
    for i in range(STEPS):
        await async_step(i)

def per_step(wf):
    start = time.perf_counter()
    assert wf.run().has_succeeded
    return (time.perf_counter() - start) / STEPS

print(json.dumps({{
    "tree": os.path.dirname(os.path.dirname(taskloom.__file__)),
    "floor": min(floor() for _ in range(3)),
    "sync": min(per_step(sequential_sync) for _ in range(3)),
    "async": min(per_step(sequential_async) for _ in range(3)),
}}))
"""


def export(rev: str, into: Path) -> Path:
    archive = into / "base.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", rev, "taskloom"], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "base", filter="data")
    return into / "base"


def measure(tree: Path) -> dict[str, float]:
    # -S: without site-packages, so the editable install of this checkout cannot shadow the tree measured
    # (the workload needs nothing but the standard library and taskloom's core).
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-S", "-c", WORKLOAD]
    out = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(str(result.pop("tree"))).resolve() == tree.resolve(), "measured the wrong tree"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"the earlier commit (default {DEFAULT_BASE})")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per tree (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = export(args.base, Path(tmp))
        rounds: dict[str, list[dict[str, float]]] = {"base": [], "now": []}
        for _ in range(args.rounds):
            rounds["base"].append(measure(base))
            rounds["now"].append(measure(ROOT))
    print(f"{STEPS} sequential durable steps on SQLite, best of 3 per process, median of {args.rounds} processes")
    for kind in ("sync", "async"):
        figures, ratios = {}, {}
        for tree, results in rounds.items():
            figures[tree] = statistics.median(r[kind] for r in results)
            # each process's cost over the floor it measured itself: drift of a shared machine cancels out
            ratios[tree] = statistics.median(r[kind] / r["floor"] for r in results)
            print(f"  {kind:<5} {tree:<4} {figures[tree] * 1e6:7.1f} us/step ({ratios[tree]:4.2f}x its floor)")
        change = ratios["now"] / ratios["base"] - 1
        raw = figures["now"] / figures["base"] - 1
        print(f"  {kind:<5} now vs {args.base}: {change:+.1%} over the floor, {raw:+.1%} raw (target <= +10%)")


if __name__ == "__main__":
    main()
