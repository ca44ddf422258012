"""An expense approval flow: small expenses are paid at once, larger ones wait for a manager.

The workflow pauses at ``manager_approval`` and its execution sits in the store, costing nothing, until
someone resumes it (here ``expense_approval.resume(...)``; equally ``taskloom resume`` or the HTTP API)
with the decision as input. Steps that ran before the pause are replayed from the store on resume,
never run twice, so nobody is paid twice.
"""

from __future__ import annotations

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import pause

AUTO_APPROVE_LIMIT = 100.0

payments: list[str] = []
messages: list[str] = []


@task
def validate_expense(expense: dict) -> dict:
    """Reject malformed claims before anyone is asked to look at them."""
    if expense["amount"] <= 0:
        raise ValueError(f"expense {expense['id']}: amount must be positive, got {expense['amount']}")
    if not expense.get("description", "").strip():
        raise ValueError(f"expense {expense['id']}: a description is required")
    return {**expense, "amount": round(float(expense["amount"]), 2)}


@task
def pay_out(expense: dict) -> str:
    reference = f"PAY-{expense['id']}"
    payments.append(reference)
    return f"{reference}: {expense['amount']:.2f} EUR to {expense['employee']}"


@task
def notify_employee(expense: dict, message: str) -> str:
    line = f"to {expense['employee']}: {message}"
    messages.append(line)
    return line


@workflow
async def expense_approval(ctx: WorkflowExecutionContext[dict]) -> dict:
    expense = await validate_expense(ctx.input)
    if expense["amount"] <= AUTO_APPROVE_LIMIT:
        payment = await pay_out(expense)
        return {"expense": expense["id"], "status": "approved", "by": "policy", "payment": payment}

    decision = await pause("manager_approval")  # resumed with {"approved": bool, "approver": ..., "note": ...}
    if not decision.get("approved"):
        note = decision.get("note") or "no reason given"
        await notify_employee(expense, f"expense {expense['id']} rejected by {decision['approver']}: {note}")
        return {"expense": expense["id"], "status": "rejected", "by": decision["approver"], "note": note}

    payment = await pay_out(expense)
    await notify_employee(expense, f"expense {expense['id']} approved by {decision['approver']}")
    return {"expense": expense["id"], "status": "approved", "by": decision["approver"], "payment": payment}


if __name__ == "__main__":
    taxi = expense_approval.run({"id": "E-1", "employee": "alice", "amount": 42.5, "description": "taxi"})
    assert taxi.has_succeeded and taxi.output["by"] == "policy", taxi
    print("result:", taxi.output)

    laptop = expense_approval.run({"id": "E-2", "employee": "bob", "amount": 1450, "description": "laptop"})
    dinner = expense_approval.run({"id": "E-3", "employee": "carol", "amount": 380, "description": "team dinner"})
    assert laptop.is_paused and dinner.is_paused, (laptop, dinner)
    assert expense_approval.status(laptop.execution_id).is_paused  # as the store has it
    print("waiting for a manager:", laptop.execution_id, dinner.execution_id)

    laptop = expense_approval.resume(laptop.execution_id, {"approved": True, "approver": "maria"})
    assert laptop.has_succeeded and laptop.output["status"] == "approved", laptop
    print("result:", laptop.output)

    dinner = expense_approval.resume(
        dinner.execution_id, {"approved": False, "approver": "maria", "note": "over the per-head limit"}
    )
    assert dinner.has_succeeded and dinner.output["status"] == "rejected", dinner
    print("result:", dinner.output)

    assert payments == ["PAY-E-1", "PAY-E-2"], payments  # the rejected one was never paid
    assert messages == [
        "to bob: expense E-2 approved by maria",
        "to carol: expense E-3 rejected by maria: over the per-head limit",
    ], messages

    bad = expense_approval.run({"id": "E-4", "employee": "dave", "amount": -5, "description": "refund?"})
    assert bad.has_failed and isinstance(bad.output, ValueError), bad
    print("invalid claim:", bad.status, bad.output)
    print("approved:", len(payments), "rejected: 1")
