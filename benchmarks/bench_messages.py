"""Message round trip: ``taskloom.send`` -> the waiting workflow's ``receive`` -> its reply step recorded.

Per store, one ``taskloom worker`` process runs ``chat`` executions that each wait in ``receive("say")``
and answer every message with a ``reply`` step. This process sends one message at a time and measures
from just before ``send`` to the timestamp the store gives the reply step's completion (same machine,
same clock): the send's commit, the worker's wake-up (PostgreSQL: NOTIFY; SQLite from another process:
its poll, ``--poll`` seconds), its claim, the replay of the execution so far, the receipt and the reply.
Every execution takes several rounds, so later rounds replay a longer history.

PostgreSQL is a throwaway server (``tests/pgserver.py``), or ``--pg-url`` / ``$TASKLOOM_BENCH_PG_URL``.

Run: ``.venv/bin/python benchmarks/bench_messages.py [--executions 50] [--rounds 4] [--poll 0.05]``

This file is also the worker's module: it imports the ``chat`` workflow below.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import receive

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@task
def reply(value: str) -> str:
    return f"re: {value}"


@workflow
async def chat(ctx: WorkflowExecutionContext[int]) -> list[str]:
    """Answers ``ctx.input`` messages of topic ``say``, each with a reply step."""
    return [await reply(await receive("say")) for _ in range(ctx.input)]


def wait_until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.0005)  # a bounded poll of the store; the figure comes from the store's timestamps
    raise SystemExit(f"bench_messages: timed out waiting for {what}")


def measure(url: str, executions: int, rounds: int, poll: float) -> list[float]:
    """Round-trip seconds of ``executions * rounds`` messages through one worker process on ``url``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from processes import stop  # type: ignore[import-not-found]  # the test suite's clean stop

    import taskloom
    from taskloom.events import EventType
    from taskloom.executions import queue_execution
    from taskloom.store import open_store

    store = open_store(url)
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
        env.update(
            TASKLOOM_DATABASE_URL=url,
            TASKLOOM_HOME=home,
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        )
        log = Path(home) / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "taskloom", "worker", "bench_messages", "--poll", str(poll)],
                env=env,
                stdout=out,
                stderr=out,
            )
        try:
            ids = [queue_execution(store, "chat", "bench_messages:chat", rounds) for _ in range(executions)]
            waiting = lambda: all(store.get_execution(i).status == "paused" for i in ids)  # noqa: E731
            wait_until(waiting, "every execution to wait in its receive")
            times: list[float] = []
            for execution_id in ids:
                for round in range(rounds):
                    reply_step = str(2 * round + 2)  # receive 1, reply 2, receive 3, reply 4, ...
                    last_seq = store.load_events(execution_id)[-1].seq
                    sent_at = time.time()
                    taskloom.send(execution_id, "say", f"message {round}", store=store)

                    def replied(
                        execution_id: str = execution_id, after: int = last_seq, step: str = reply_step
                    ) -> float | None:
                        for event in store.load_events(execution_id, after):
                            if event.type is EventType.STEP_COMPLETED and event.step_id == step:
                                return event.timestamp.timestamp()
                        return None

                    wait_until(replied, f"the reply of {execution_id} to round {round}")
                    times.append(float(replied() or 0.0) - sent_at)
            return times
        finally:
            stop(worker)
            store.close()


@contextlib.contextmanager
def postgres_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import running_postgres  # type: ignore[import-not-found]  # tests/, on sys.path above

    with running_postgres() as pg:
        yield pg.url()


def report(store: str, times: list[float]) -> None:
    median = statistics.median(times) * 1000
    p99 = statistics.quantiles(times, n=100, method="inclusive")[98] * 1000
    print(f"{store:<34} median {median:7.1f} ms   p99 {p99:7.1f} ms   ({len(times)} round trips)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4, help="messages per execution")
    parser.add_argument("--poll", type=float, default=0.05, help="the worker's poll interval (seconds)")
    parser.add_argument("--pg-url", default=os.environ.get("TASKLOOM_BENCH_PG_URL"))
    args = parser.parse_args()
    print(f"message round trip: {args.executions} executions x {args.rounds} messages, worker --poll {args.poll}")
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as folder:
        sqlite_times = measure(f"sqlite:///{folder}/bench.db", args.executions, args.rounds, args.poll)
    report(f"SQLite (the worker polls, {args.poll} s)", sqlite_times)
    with postgres_url(args.pg_url) as url:
        pg_times = measure(url, args.executions, args.rounds, args.poll)
    report("PostgreSQL (LISTEN/NOTIFY)", pg_times)


if __name__ == "__main__":
    main()
