"""A workflow on a one-second schedule, run for three seconds by ``taskloom.run_schedules``.

``@workflow(schedule=...)`` stores the schedule in the database; a ticker starts one execution per
tick (its id is the schedule's name and the tick's time), and the execution reads its tick as
``ctx.scheduled_at``. In production every ``taskloom worker`` process ticks (any number of them: each
tick still starts once); here, with no workers, ``run_schedules`` is this process's ticker and worker.
"""

from __future__ import annotations

from datetime import datetime

from taskloom import WorkflowExecutionContext, run_schedules, task, workflow
from taskloom.schedules import list_schedules
from taskloom.store import default_store

stamped: list[datetime] = []  # what the task saw, in this process


@task
def stamp(tick: datetime) -> str:
    stamped.append(tick)
    return f"heartbeat at {tick:%H:%M:%S}"


@workflow(schedule="* * * * * *")  # six fields: seconds first
async def heartbeat(ctx: WorkflowExecutionContext[None]) -> str:
    assert ctx.scheduled_at is not None
    return await stamp(ctx.scheduled_at)


def main() -> None:
    run_schedules(heartbeat, seconds=3.2)

    store = default_store()
    (schedule,) = list_schedules(store)
    print(f"schedule {schedule.name!r}: {schedule.cron!r} in {schedule.timezone}, last tick {schedule.last_tick:%X}")
    runs = sorted(store.list_executions(workflow="heartbeat"), key=lambda r: r.id)
    done = [r for r in runs if r.status == "completed"]
    for record in done:
        print(f"  {record.id}  {heartbeat.status(record.id).output}")
    ticks = [heartbeat.status(r.id).scheduled_at for r in done]
    seconds = [int(t.timestamp()) for t in ticks if t is not None]
    assert len(seconds) >= 2, f"expected a tick a second for three seconds, got {seconds}"
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds))), f"a tick is missing: {seconds}"
    assert sorted(stamped) == ticks, "each tick's task ran once, in this process"
    assert all(r.status == "queued" for r in runs[len(done) :]), "only a tick started at the very end may wait"
    print("result: every tick ran once, one second apart")


if __name__ == "__main__":
    main()
