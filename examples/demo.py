"""The `make demo` workflow: a small, real order pipeline on the embedded SQLite store.

It shows a task reporting progress, a flaky call that succeeds on retry, a fan-out with `map`, a
durable sleep, and the recorded result. Run it again with the printed execution id and nothing runs
twice: every step is replayed from the store.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

from taskloom import TaskControl, WorkflowExecutionContext, task, workflow
from taskloom.tasks import now, parallel, sleep

_attempts: dict[str, int] = {}


@dataclass
class Receipt:
    order: str
    items: int
    total: float
    checked_at: object


@task
def validate(tc: TaskControl, items: list[dict]) -> list[dict]:
    """Check each line of the order, reporting progress as it goes."""
    for i, item in enumerate(items, 1):
        if item["qty"] <= 0:
            raise ValueError(f"bad quantity for {item['sku']}")
        time.sleep(0.15)  # pretend to look the SKU up
        tc.update_progress(i / len(items) * 100, f"checked {item['sku']}")
    tc.log(f"{len(items)} lines valid")
    return items


@task.with_options(retry_max_attempts=3, retry_delay=0.2, retry_backoff=2)
def price(item: dict) -> float:
    """A pricing service that fails the first time it sees each SKU (then succeeds on retry)."""
    _attempts[item["sku"]] = _attempts.get(item["sku"], 0) + 1
    if _attempts[item["sku"]] == 1 and item["sku"].endswith("1"):
        raise ConnectionError(f"pricing service busy for {item['sku']}")
    return round(item["qty"] * 9.99, 2)


@task
async def reserve_stock(items: list[dict]) -> str:
    return f"reserved {sum(i['qty'] for i in items)} units"


@task
async def notify(order: str) -> str:
    return f"mail sent for {order}"


@workflow
async def fulfil_order(ctx: WorkflowExecutionContext[dict]) -> Receipt:
    order = ctx.input
    items = await validate(order["items"])
    prices = await price.map(items)
    await parallel(reserve_stock(items), notify(order["id"]))
    await sleep(0.5)  # a durable timer: a re-run after a crash sleeps only what is left
    checked = await now()
    return Receipt(order["id"], len(items), round(sum(prices), 2), checked.isoformat())


if __name__ == "__main__":
    from taskloom.cli.main import main

    order = json.dumps({"id": "A-1001", "items": [{"sku": f"sku-{n}", "qty": q} for n, q in ((1, 2), (2, 1), (3, 5))]})
    sys.exit(main(["run", "demo:fulfil_order", *sys.argv[1:], order]))
