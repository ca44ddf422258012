"""An order saga: reserve inventory, charge the card, ship, each undone if a later step fails.

Two levels of undo:

- A step's own ``rollback`` cleans up what that step did before it failed (a half-made reservation,
  an authorisation whose capture was declined, a label for a shipment no carrier took).
- Compensations of earlier, *completed* steps are ordinary tasks called by the workflow body in
  ``except`` blocks. A failed step reaches the body as its original exception type, so the saga
  catches exactly the failures it knows how to compensate; anything else fails the execution.

Every compensation is a durable step: if the process dies half-way through undoing, running the
execution again finishes the undo without repeating what was already undone.
"""

from __future__ import annotations

from taskloom import WorkflowExecutionContext, task, workflow


class OutOfStock(Exception):
    pass


class PaymentDeclined(Exception):
    pass


class ShippingUnavailable(Exception):
    pass


STOCK = {"book": 5, "lamp": 1, "mug": 10}
DECLINED_CARDS = {"4000-0000-0000-0002"}
SHIPPABLE_COUNTRIES = {"DE", "FR", "NL"}

held: dict[str, dict[str, int]] = {}  # order id -> items held in the warehouse
authorised: dict[str, float] = {}  # order id -> amount held on the card
labels: dict[str, str] = {}  # order id -> shipping label
ledger: list[str] = []  # everything that happened, in order


# -- reserve -------------------------------------------------------------------------------------------
def release_partial_hold(order: dict) -> None:
    """Rollback of reserve_inventory: give back whatever it had held before it failed."""
    for item, qty in held.pop(order["id"], {}).items():
        STOCK[item] += qty
        ledger.append(f"rollback: released {qty} {item} of {order['id']}")


@task.with_options(rollback=release_partial_hold)
def reserve_inventory(order: dict) -> dict[str, int]:
    hold = held.setdefault(order["id"], {})
    for item, qty in order["items"].items():
        if STOCK.get(item, 0) < qty:
            raise OutOfStock(f"only {STOCK.get(item, 0)} {item} left, order {order['id']} wants {qty}")
        STOCK[item] -= qty
        hold[item] = qty
    ledger.append(f"reserved {order['items']} for {order['id']}")
    return dict(hold)


@task
def release_inventory(order_id: str, reservation: dict[str, int]) -> None:
    """Compensation of a completed reservation."""
    for item, qty in reservation.items():
        STOCK[item] += qty
    held.pop(order_id, None)
    ledger.append(f"compensate: released reservation of {order_id}")


# -- charge --------------------------------------------------------------------------------------------
def void_authorisation(order: dict, amount: float) -> None:
    """Rollback of charge_card: a hold on the card whose capture failed must not linger."""
    if authorised.pop(order["id"], None) is not None:
        ledger.append(f"rollback: voided authorisation of {order['id']}")


@task.with_options(rollback=void_authorisation)
def charge_card(order: dict, amount: float) -> str:
    authorised[order["id"]] = amount
    if order["card"] in DECLINED_CARDS:
        raise PaymentDeclined(f"card ending {order['card'][-4:]} declined for {amount:.2f} EUR")
    ledger.append(f"charged {amount:.2f} EUR for {order['id']}")
    return f"CH-{order['id']}"


@task
def refund_payment(order_id: str, charge_id: str, amount: float) -> None:
    """Compensation of a completed charge."""
    authorised.pop(order_id, None)
    ledger.append(f"compensate: refunded {amount:.2f} EUR ({charge_id})")


# -- ship ----------------------------------------------------------------------------------------------
def cancel_label(order: dict) -> None:
    """Rollback of ship: a printed label for a parcel nobody will carry is voided."""
    if labels.pop(order["id"], None) is not None:
        ledger.append(f"rollback: cancelled label of {order['id']}")


@task.with_options(rollback=cancel_label, retry_max_attempts=1, retry_delay=0.05)
def ship(order: dict) -> str:
    labels.setdefault(order["id"], f"LBL-{order['id']}")  # idempotent across retries
    if order["country"] not in SHIPPABLE_COUNTRIES:
        raise ShippingUnavailable(f"no carrier delivers to {order['country']}")
    ledger.append(f"shipped {order['id']} with {labels[order['id']]}")
    return labels[order["id"]]


PRICES = {"book": 12.5, "lamp": 40.0, "mug": 8.0}


@workflow
async def order_saga(ctx: WorkflowExecutionContext[dict]) -> dict:
    order = ctx.input
    amount = sum(PRICES[item] * qty for item, qty in order["items"].items())
    try:
        reservation = await reserve_inventory(order)
    except OutOfStock as error:  # nothing completed yet; the step's rollback released its partial hold
        return {"order": order["id"], "status": "rejected", "reason": str(error)}

    try:
        charge_id = await charge_card(order, amount)
    except PaymentDeclined as error:
        await release_inventory(order["id"], reservation)
        return {"order": order["id"], "status": "cancelled", "reason": str(error)}

    try:
        label = await ship(order)
    except ShippingUnavailable as error:
        await refund_payment(order["id"], charge_id, amount)
        await release_inventory(order["id"], reservation)
        return {"order": order["id"], "status": "cancelled", "reason": str(error)}

    return {"order": order["id"], "status": "shipped", "charged": amount, "label": label}


def _order(order_id: str, items: dict[str, int], card: str = "4242-4242-4242-4242", country: str = "DE") -> dict:
    return {"id": order_id, "items": items, "card": card, "country": country}


if __name__ == "__main__":
    start_stock = dict(STOCK)

    ok = order_saga.run(_order("O-1", {"book": 2, "mug": 1}))
    assert ok.has_succeeded and ok.output["status"] == "shipped", ok
    print("result:", ok.output)
    sold = {"book": 2, "mug": 1}

    ledger.clear()
    declined = order_saga.run(_order("O-2", {"book": 1}, card="4000-0000-0000-0002"))
    assert declined.output["status"] == "cancelled", declined
    assert ledger == [
        "reserved {'book': 1} for O-2",
        "rollback: voided authorisation of O-2",
        "compensate: released reservation of O-2",
    ], ledger
    print("result:", declined.output)

    ledger.clear()
    unshippable = order_saga.run(_order("O-3", {"lamp": 1}, country="Atlantis"))
    assert unshippable.output["status"] == "cancelled", unshippable
    assert ledger == [
        "reserved {'lamp': 1} for O-3",
        "charged 40.00 EUR for O-3",
        "rollback: cancelled label of O-3",
        "compensate: refunded 40.00 EUR (CH-O-3)",
        "compensate: released reservation of O-3",
    ], ledger
    kinds = [(str(e.type), e.name) for e in unshippable.events if e.type in ("step_retrying", "step_rollback")]
    assert kinds == [("step_retrying", "ship"), ("step_rollback", "ship")], kinds
    print("result:", unshippable.output)

    ledger.clear()
    short = order_saga.run(_order("O-4", {"mug": 2, "book": 9}))
    assert short.output["status"] == "rejected", short
    assert ledger == ["rollback: released 2 mug of O-4"], ledger  # the mugs held before the books ran out
    print("result:", short.output)

    expected = {item: start_stock[item] - sold.get(item, 0) for item in start_stock}
    assert expected == STOCK, (STOCK, expected)
    assert authorised == {"O-1": 33.0} and set(labels) == {"O-1"}, (authorised, labels)
    print("stock after the saga:", STOCK)
