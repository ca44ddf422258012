"""Child workflows: a workflow that runs other workflows, each as a child execution (``await other(input)``).

The order workflow charges the card in a child workflow and ships each parcel in another. Awaiting a
workflow inside a workflow starts a child execution, recorded as one step of the parent: its id derives
from the parent's id and the step (``<parent>-child-<step>``), so running the parent again, or a re-run
after its process died, finds the child instead of starting it twice. The child's output is the step's
value; its failure raises its own exception in the parent; ``ctx.parent_id`` names the parent; cancelling
the parent cancels its running children. Here, with no workers, the children run in this process; with
``taskloom worker`` they are queued for a worker and the parent waits, paused, until they end.

Run: ``python examples/child_workflows.py``
"""

from __future__ import annotations

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.store import default_store

CHARGES: list[str] = []


class CardDeclined(Exception):
    pass


@task
def charge_card(order: str, amount: float) -> str:
    if amount > 100:
        raise CardDeclined(f"{order}: {amount:.2f} is over the card's limit")
    CHARGES.append(order)
    return f"charged {amount:.2f}"


@task
def label(parcel: str) -> str:
    return f"{parcel}:shipped"


@workflow
async def payment(ctx: WorkflowExecutionContext[dict]) -> str:
    assert ctx.parent_id is not None  # always run as a child here
    return await charge_card(ctx.input["order"], ctx.input["amount"])


@workflow
async def shipping(ctx: WorkflowExecutionContext[str]) -> str:
    return await label(ctx.input)


@workflow
async def order(ctx: WorkflowExecutionContext[dict]) -> dict:
    try:
        paid = await payment({"order": ctx.input["order"], "amount": ctx.input["amount"]})
    except CardDeclined as declined:  # the child's own exception, raised in the parent
        return {"order": ctx.input["order"], "declined": str(declined)}
    shipped = [await shipping(parcel) for parcel in ctx.input["parcels"]]
    return {"order": ctx.input["order"], "paid": paid, "shipped": shipped}


ctx = order.run({"order": "O-1", "amount": 42.0, "parcels": ["box-1", "box-2"]}, execution_id="O-1")
assert ctx.status == "completed", ctx.output
again = order.run(execution_id="O-1")  # the same id again: returned as it is, no child runs twice
assert again.output == ctx.output and CHARGES == ["O-1"], CHARGES

declined = order.run({"order": "O-2", "amount": 500.0, "parcels": []}, execution_id="O-2")
assert declined.output["declined"] == "O-2: 500.00 is over the card's limit", declined.output

children = default_store().list_executions(id_prefix="O-1-child-")
assert sorted((c.id, c.workflow, c.parent_id) for c in children) == [
    ("O-1-child-1", "payment", "O-1"),
    ("O-1-child-2", "shipping", "O-1"),
    ("O-1-child-3", "shipping", "O-1"),
], children
print("result:", ctx.output["paid"], "and", ", ".join(ctx.output["shipped"]), f"in {len(children)} child executions")
