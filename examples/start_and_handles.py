"""Start orders without waiting, under ids of your own, and collect their results through handles.

``fulfil.start(order, execution_id=f"order-{n}")`` returns an :class:`~taskloom.ExecutionHandle` at once;
this process runs the execution in the background under a lease (as a worker would: if the process
died, a worker or ``taskloom recover`` would finish it). The id is the order's idempotency key: a
second start, or a ``fulfil.run`` with the same id, never charges the card again; it returns the same
execution. ``delay=`` holds an execution back; ``await handle`` works in async code.

Run: ``python examples/start_and_handles.py``
"""

from __future__ import annotations

import asyncio
import time

from taskloom import WorkflowExecutionContext, task, workflow

charges: list[str] = []


class PaymentDeclined(Exception):
    """The order's own failure: ``handle.result()`` raises it as it is."""


@task
def charge(order: dict) -> str:
    if order["total"] > 500:
        raise PaymentDeclined(f"order {order['id']}: card declined for {order['total']:.2f}")
    charges.append(order["id"])
    return f"CH-{order['id']}"


@task
def ship(order: dict, receipt: str) -> str:
    return f"{order['id']} shipped ({receipt})"


@workflow
async def fulfil(ctx: WorkflowExecutionContext[dict]) -> str:
    receipt = await charge(ctx.input)
    return await ship(ctx.input, receipt)  # type: ignore[no-any-return]


def main() -> None:
    orders = [{"id": f"O-{n}", "total": 20.0 * n} for n in range(1, 4)]
    handles = [fulfil.start(order, execution_id=f"order-{order['id']}") for order in orders]  # returns at once
    shipped = [handle.result(timeout=30) for handle in handles]
    assert shipped == ["O-1 shipped (CH-O-1)", "O-2 shipped (CH-O-2)", "O-3 shipped (CH-O-3)"], shipped

    # The same id again, by start or by run: the same execution, and the card is not charged twice.
    again = fulfil.start({"id": "O-1", "total": 20.0}, execution_id="order-O-1")
    assert again.result() == "O-1 shipped (CH-O-1)"
    assert fulfil.run({"id": "O-1", "total": 20.0}, execution_id="order-O-1").output == "O-1 shipped (CH-O-1)"
    assert fulfil.handle("order-O-2").status() == "completed"
    assert charges == ["O-1", "O-2", "O-3"], charges

    # A failed order raises its own exception from result().
    declined = fulfil.start({"id": "O-9", "total": 900.0}, execution_id="order-O-9")
    try:
        declined.result(timeout=30)
        raise AssertionError("a declined card must fail the order")
    except PaymentDeclined as error:
        assert "card declined for 900.00" in str(error)
    assert declined.status() == "failed"

    # delay=: queued now, run no earlier than that.
    asked = time.time()
    later = fulfil.start({"id": "O-4", "total": 80.0}, delay=0.2)
    assert later.status() == "queued"
    assert later.result(timeout=30) == "O-4 shipped (CH-O-4)"
    assert time.time() - asked >= 0.2

    # In async code: await the start and the handle.
    async def from_async() -> str:
        handle = await fulfil.astart({"id": "O-5", "total": 100.0}, execution_id="order-O-5")
        return await handle  # type: ignore[no-any-return]

    assert asyncio.run(from_async()) == "O-5 shipped (CH-O-5)"
    print(f"result: {len(charges)} orders charged once each: {', '.join(charges)}; O-9 declined")


if __name__ == "__main__":
    main()
