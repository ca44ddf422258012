"""Code written for Flux, ported by rewriting its imports (``flux`` -> ``taskloom``): an order review.

What it relies on, as Flux users write it:

- ``parallel(..., max_concurrent=2, raise_on_error=False)``: at most two price look-ups at once, and a
  look-up that fails leaves its exception in the results instead of failing the workflow;
- a Graph whose edge conditions are ``async def``;
- ``pause("approve_order", output=summary)``: the approver sees the summary on the pause event;
- ``workflow.run(execution_id=...)`` continues the paused execution (the pause returns None), as
  Flux's examples resume; nothing that completed before the pause runs again.
"""

import asyncio

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.events import EventType
from taskloom.tasks import Graph, parallel, pause

PRICES = {"cup": 4.5, "plate": 7.25, "bowl": 6.0}
looked_up: list[str] = []
running = {"now": 0, "peak": 0}


@task
async def price_of(item: str) -> float:
    looked_up.append(item)
    running["now"] += 1
    running["peak"] = max(running["peak"], running["now"])
    try:
        await asyncio.sleep(0.01)  # the price service answers
        if item not in PRICES:
            raise LookupError(f"no price for {item!r}")
        return PRICES[item]
    finally:
        running["now"] -= 1


@task
def total(prices: list) -> float:
    return round(sum(p for p in prices if isinstance(p, float)), 2)


@task
def auto_approve(amount: float) -> str:
    return f"auto-approved {amount}"


@task
def manual_review(amount: float) -> str:
    return f"needs review: {amount}"


async def is_small(amount: float) -> bool:
    await asyncio.sleep(0)  # e.g. asks a limits service
    return amount < 20


async def is_large(amount: float) -> bool:
    return not await is_small(amount)


routing = (
    Graph("routing")
    .add_node("total", total)
    .add_node("auto_approve", auto_approve)
    .add_node("manual_review", manual_review)
    .add_edge("total", "auto_approve", condition=is_small)
    .add_edge("total", "manual_review", condition=is_large)
    .start_with("total")
    .end_with("auto_approve")
    .end_with("manual_review")
    .validate()
)


@workflow
async def order_review(ctx: WorkflowExecutionContext[list]):
    prices = await parallel(*(price_of(item) for item in ctx.input), max_concurrent=2, raise_on_error=False)
    missing = [item for item, price in zip(ctx.input, prices, strict=True) if isinstance(price, Exception)]
    verdict = await routing(prices)
    summary = {"verdict": verdict, "missing": missing}
    comment = await pause("approve_order", output=summary)
    return f"{verdict}; missing {missing}; comment {comment!r}"


if __name__ == "__main__":
    order = ["cup", "plate", "spoon", "bowl"]
    ctx = order_review.run(order)
    assert ctx.is_paused, ctx
    assert running["peak"] == 2, running
    paused = next(e for e in ctx.events if e.type is EventType.EXECUTION_PAUSED)
    assert paused.value == {"verdict": "auto-approved 17.75", "missing": ["spoon"]}, paused.value
    print("waiting for approval of:", paused.value)

    ctx = order_review.run(execution_id=ctx.execution_id)  # as Flux resumes a paused execution
    assert ctx.has_succeeded, ctx
    assert sorted(looked_up) == sorted(order), looked_up  # replayed, not looked up again
    assert ctx.output == "auto-approved 17.75; missing ['spoon']; comment None", ctx.output
    print("result:", ctx.output)
