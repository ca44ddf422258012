"""Messages: a workflow that waits for what the rest of the program sends it (``taskloom.send``).

The order desk takes an address, then items until "done", then a payment. Each ``await receive(topic)``
takes the oldest unread message of its topic; when there is none, the execution waits durably (its
status is ``paused``, waiting at ``receive:<topic>``) and ``wf.run`` returns. Messages sent before the
workflow asks are kept, so the order in which topics are sent does not matter, only the order within a
topic. Here nothing else runs the workflow, so the program continues it with ``wf.run(execution_id=...)``
after sending; with ``taskloom worker examples.messages`` running, a worker would continue it on its own.

Run: ``python examples/messages.py``
"""

from __future__ import annotations

from typing import Any

from taskloom import WorkflowExecutionContext, send, task, workflow
from taskloom.tasks import receive


@task
def pack(address: str, items: list[str], paid: float, note: str | None) -> str:
    return f"{len(items)} items ({', '.join(items)}) to {address}, paid {paid:.2f}, note: {note}"


@workflow
async def order_desk(ctx: WorkflowExecutionContext[None]) -> str:
    address = await receive("address")
    items = []
    while (item := await receive("item")) != "done":
        items.append(item)
    note = await receive("gift-note", timeout=0)  # a look without waiting: None, nobody sent one
    paid = await receive("payment")
    return await pack(address, items, paid, note)


def waiting_for(ctx: WorkflowExecutionContext[Any]) -> str:
    return [e.name for e in ctx.events if e.type == "execution_paused"][-1]


ctx = order_desk.run()
assert ctx.status == "paused" and waiting_for(ctx) == "receive:address", (ctx.status, ctx.output)

# Items first, the address last: each receive takes its own topic's messages, oldest first.
for item in ("mug", "pen", "done"):
    send(ctx.execution_id, "item", item)
send(ctx.execution_id, "address", "12 Quay St")
ctx = order_desk.run(execution_id=ctx.execution_id)
assert ctx.status == "paused" and waiting_for(ctx) == "receive:payment", (ctx.status, ctx.output)

send(ctx.execution_id, "payment", 12.5)
ctx = order_desk.run(execution_id=ctx.execution_id)
assert ctx.status == "completed", ctx.output
print("result:", ctx.output)
