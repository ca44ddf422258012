"""A rate-limited email API behind a queue: at most 2 sends at once and 5 per second, across workers.

``emails`` is declared in code; ``send_email.start(..., queue=emails, priority=p)`` queues executions on
it (lower priority first); two ``taskloom worker`` processes serving it (``--queue emails``) run them, and
their claims keep the limits in the database, whichever worker claims. The example starts the two
workers itself (in production you run them), waits, and prints what ran when.

Run: ``python examples/queues.py``
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from taskloom import Queue, WorkflowExecutionContext, task, workflow
from taskloom.store import default_store

emails = Queue("emails", concurrency=2, rate_limit=(5, 1.0))


@task
def deliver(to: str) -> tuple[float, float]:
    started = time.time()
    time.sleep(0.1)  # the call to the email API
    return started, time.time()


@workflow
async def send_email(ctx: WorkflowExecutionContext[str]) -> tuple[float, float]:
    return await deliver(ctx.input)


def main() -> None:
    handles = [send_email.start(f"user{n}@example.com", queue=emails) for n in range(9)]
    handles.append(send_email.start("ceo@example.com", queue=emails, priority=-1))  # jumps the line

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    command = [sys.executable, "-m", "taskloom", "worker", "queues", "--queue", "emails", "--poll", "0.05"]
    workers = [subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        spans = {handle.execution_id: handle.result(timeout=60) for handle in handles}
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait()

    first = min(start for start, _ in spans.values())
    for handle in sorted(handles, key=lambda h: spans[h.execution_id][0]):
        start, end = spans[handle.execution_id]
        print(f"  {handle.execution_id[:8]}  {start - first:5.2f} s -> {end - first:5.2f} s")
    most = max(sum(1 for s, e in spans.values() if s <= moment < e) for moment, _ in spans.values())
    starts = sorted(start for start, _ in spans.values())
    assert most <= 2, f"{most} sends at once"
    # 5 claims a second: the 6th to 10th start a second or more after the 1st (less a step's small lag)
    assert starts[5] - starts[0] > 0.8, starts
    # claimed first; with two sends at once, its step may start a hair after the one claimed next
    assert spans[handles[-1].execution_id][0] <= starts[1], "the priority -1 email went first"
    (queue,) = [q for q in default_store().list_queues() if q.name == "emails"]
    print(f"queue {queue.name!r}: concurrency {queue.concurrency}, rate {queue.rate_count}/{queue.rate_seconds:g}s")
    print(f"result: 10 emails in {starts[-1] - starts[0]:.1f} s, at most {most} at once, the CEO's first")


if __name__ == "__main__":
    main()
