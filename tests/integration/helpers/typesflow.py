"""A workflow whose steps pass and return datetimes, dataclasses, pydantic models and exceptions.

The body checks, on every run and replay, that each value it gets back from a step has its type, and
returns what it saw; a replay in another process must see exactly what the first process saw.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import now, pause, uuid4

WHEN = dt.datetime(2024, 3, 9, 17, 45, 30, 250000, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Invoice:
    number: int
    issued: dt.datetime
    lines: tuple[str, ...]


class Line(BaseModel):
    sku: str
    amount: Decimal


class Order(BaseModel):
    id: uuid.UUID
    invoice_number: int
    placed: dt.datetime
    lines: list[Line]


class OrderRejected(Exception):
    def __init__(self, order: uuid.UUID, reason: str) -> None:
        super().__init__(f"order {order} rejected: {reason}")
        self.order = order
        self.reason = reason


INVOICE = Invoice(42, WHEN, ("widget", "gadget"))
ORDER = Order(
    id=uuid.UUID("9b2e6a34-4c51-4d1e-9a3f-0d6c2b7e8f10"),
    invoice_number=42,
    placed=WHEN,
    lines=[Line(sku="W-1", amount=Decimal("19.90")), Line(sku="G-2", amount=Decimal("5.05"))],
)


@task
def issued_at() -> dt.datetime:
    return WHEN


@task
def make_invoice(issued: dt.datetime) -> Invoice:
    assert type(issued) is dt.datetime and issued.tzinfo is not None
    return Invoice(42, issued, ("widget", "gadget"))


@task
def make_order(invoice: Invoice) -> Order:
    assert type(invoice) is Invoice
    return ORDER.model_copy(update={"invoice_number": invoice.number, "placed": invoice.issued})


@task
def reject(order: Order) -> None:
    assert type(order) is Order
    try:
        raise ConnectionRefusedError("warehouse offline")
    except ConnectionRefusedError as cause:
        raise OrderRejected(order.id, "no stock") from cause


@workflow
async def typed(ctx: WorkflowExecutionContext[str]) -> dict[str, Any]:
    issued = await issued_at()
    invoice = await make_invoice(issued)
    order = await make_order(invoice)
    try:
        await reject(order)
    except OrderRejected as error:  # works on replay too: the stored error is still an OrderRejected
        rejected: BaseException = error
    recorded_now = await now()
    recorded_id = await uuid4()
    if ctx.input == "pause":
        await pause("between processes")
    return {
        "issued": issued,
        "invoice": invoice,
        "order": order,
        "error": rejected,
        "error_cause": type(rejected.__cause__).__qualname__,
        "now": recorded_now,
        "uuid": recorded_id,
    }
