"""What versioning costs: ``patched()`` on a replay, and a worker's claim with its versions filter.

1. Replay: an execution of ``STEPS`` recorded steps paused at the end is resumed (its whole log replayed,
   then one more step). The floor is the same workflow without ``patched``; the measured one calls
   ``patched("change")`` first, so its first run recorded the marker and the replay reads the log once
   to find it: what a patch costs every replay. Each pair of resumes is measured in the same round.
   (The first run pays one more write, the marker's: that is the cost of a live ``patched()``.)
2. Claim: ``claim_next_execution`` over a queue of ``--claims`` queued executions, with the filter a
   worker passes (``versions={...}``) against none, alternating rounds on one SQLite file each.

Prints medians and the ratios (target: about 1.0 for both). SQLite in a temporary folder.

Run: ``.venv/bin/python benchmarks/bench_versioning.py [--steps 300] [--rounds 7] [--claims 500]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskloom import WorkflowExecutionContext, patched, task, workflow
from taskloom.store import open_store
from taskloom.store.base import Store
from taskloom.tasks import pause

STEPS = 300


@task
def step(i: int) -> int:
    return i


@workflow
async def plain(ctx: WorkflowExecutionContext[int]) -> int:
    total = sum([await step(i) for i in range(ctx.input)])
    await pause("go")
    return total + await step(0)


@workflow
async def with_patch(ctx: WorkflowExecutionContext[int]) -> int:
    first = 0 if patched("change") else 1
    total = sum([await step(i) for i in range(first, ctx.input + first)])
    await pause("go")
    return total + await step(0)


def resume_seconds(wf: Any, steps: int) -> float:
    paused = wf.run(steps)
    start = time.perf_counter()
    done = wf.resume(paused.execution_id, "go")
    elapsed = time.perf_counter() - start
    assert done.has_succeeded, done.output
    return elapsed


def claim_seconds(store: Store, claims: int, versions: dict[str, str] | None, tag: str) -> float:
    for n in range(claims):
        store.create_execution(f"{tag}-{n}", "billing", None, "queued", "bench:billing")
    start = time.perf_counter()
    for _ in range(claims):
        assert store.claim_next_execution("bench", 30.0, ["billing"], versions=versions) is not None
    return (time.perf_counter() - start) / claims


def pairs(rounds: int, floor: Callable[[int], float], measured: Callable[[int], float]) -> tuple[float, float]:
    floors, values = [], []
    for r in range(rounds):
        floors.append(floor(r))
        values.append(measured(r))
    return statistics.median(floors), statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--claims", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["TASKLOOM_HOME"] = home
        os.environ["TASKLOOM_DATABASE_URL"] = f"sqlite:///{Path(home) / 'replay.db'}"
        resume_seconds(plain, 10)  # warm-up: the store's file, imports
        floor, value = pairs(
            args.rounds, lambda r: resume_seconds(plain, args.steps), lambda r: resume_seconds(with_patch, args.steps)
        )
        print(f"replay of {args.steps} steps: plain {floor * 1e3:.1f} ms, with patched() {value * 1e3:.1f} ms")
        print(f"  ratio {value / floor:.3f} (target: about 1.0)")

        store = open_store(f"sqlite:///{Path(home) / 'claims.db'}")
        try:
            floor, value = pairs(
                args.rounds,
                lambda r: claim_seconds(store, args.claims, None, f"plain{r}"),
                lambda r: claim_seconds(store, args.claims, {"billing": "2"}, f"versioned{r}"),
            )
        finally:
            store.close()
        print(f"claim: no filter {floor * 1e6:.0f} us, versions filter {value * 1e6:.0f} us per claim")
        print(f"  ratio {value / floor:.3f} (target: about 1.0)")


if __name__ == "__main__":
    main()
