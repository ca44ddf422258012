"""Changing a workflow while executions of it are still running: ``patched``, ``deprecate_patch``, ``version``.

Three deploys of one workflow, ``invoice``, played in one process (in real life each is new code on
your workers; here each is a new definition under the same name):

1. the first code computes the tax at 10 % and waits for an approval;
2. the fix (20 %) goes in behind ``patched("tax-20")``: invoices started before it and already past the
   tax step finish on the new code but keep 10 %, new ones get 20 %;
3. once every 10 % invoice has finished, ``deprecate_patch("tax-20")`` keeps only the new branch.

Last, a change too big for a patch gets a new ``version``: an execution of the old version is refused by
the new code (a worker of the new version never claims it), so it is finished by the old code.

Run: ``python examples/versioning.py``
"""

from __future__ import annotations

from typing import Any

from taskloom import WorkflowError, WorkflowExecutionContext, deprecate_patch, patched, task, workflow
from taskloom.tasks import pause


@task
def tax_at(amount: float, rate: float) -> float:
    return round(amount * rate, 2)


# -- deploy 1 ------------------------------------------------------------------------------------
@workflow.with_options(name="invoice")
async def invoice_v1(ctx: WorkflowExecutionContext[float]) -> str:
    tax = await tax_at(ctx.input, 0.10)
    await pause("approve")
    return f"{ctx.input} + {tax}"


# -- deploy 2: the fix behind a patch --------------------------------------------------------------
@workflow.with_options(name="invoice")
async def invoice_v2(ctx: WorkflowExecutionContext[float]) -> str:
    if patched("tax-20"):
        tax = await tax_at(ctx.input, 0.20)
    else:  # an invoice that computed its tax before the fix keeps the old rate
        tax = await tax_at(ctx.input, 0.10)
    await pause("approve")
    note = "" if patched("tax-20") else " (old rate)"  # the same answer in the same execution
    return f"{ctx.input} + {tax}{note}"


# -- deploy 3: no invoice on the old rate is left -----------------------------------------------------
@workflow.with_options(name="invoice")
async def invoice_v3(ctx: WorkflowExecutionContext[float]) -> str:
    deprecate_patch("tax-20")
    tax = await tax_at(ctx.input, 0.20)
    await pause("approve")
    return f"{ctx.input} + {tax}"


# -- a bigger change: a new version ---------------------------------------------------------------
def receipt(version: str) -> Any:
    @workflow.with_options(name="receipt", version=version)
    async def receipt(ctx: WorkflowExecutionContext[str]) -> str:
        await pause("sign")
        return f"receipt {ctx.input} by code {version}"

    return receipt


old = invoice_v1.run(100.0)  # computes 10 %, then waits
assert old.is_paused

new = invoice_v2.run(100.0)  # after deploy 2: 20 %
assert invoice_v2.resume(old.execution_id, "ok").output == "100.0 + 10.0 (old rate)"
assert invoice_v2.resume(new.execution_id, "ok").output == "100.0 + 20.0"

marked = invoice_v2.run(50.0)  # started on deploy 2, finished on deploy 3
assert invoice_v3.resume(marked.execution_id, "ok").output == "50.0 + 10.0"
assert invoice_v3.resume(invoice_v3.run(10.0).execution_id, "ok").output == "10.0 + 2.0"

signing = receipt("1").run("R-1")
try:
    receipt("2").resume(signing.execution_id, "me")
    raise AssertionError("version 2 code ran a version 1 execution")
except WorkflowError as refused:
    print("refused:", refused)
finished = receipt("1").resume(signing.execution_id, "me")
assert finished.output == "receipt R-1 by code 1"

print("result: the old invoice kept 10 %, the new ones got 20 %, and version 1 finished its own receipt")
