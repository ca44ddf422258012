"""Values keep their Python types across processes: a second process replays what the first recorded.

``helpers.typesflow.typed`` runs in one process until it pauses; a second process resumes it, replaying
every step from the store (the steps check the types of the values they are given); a third, this one,
reads the output from the store and compares it with the values built here.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

from taskloom.events import EventType
from taskloom.store import default_store

pytestmark = pytest.mark.integration

TARGET = "helpers.typesflow:typed"


def run(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "helpers.run", TARGET, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_resumed_in_a_new_process_the_values_keep_their_types(workflow_env: dict[str, str]) -> None:
    from helpers.typesflow import INVOICE, ORDER, WHEN, Invoice, Order, OrderRejected

    paused = run(workflow_env, "new", json.dumps("pause"))
    assert paused["status"] == "paused"
    execution_id = paused["execution_id"]
    resumed = run(workflow_env, "resume", execution_id)
    assert resumed["status"] == "completed", resumed
    assert resumed["types"] == {
        "issued": "datetime",
        "invoice": "Invoice",
        "order": "Order",
        "error": "OrderRejected",
        "error_cause": "str",
        "now": "datetime",
        "uuid": "UUID",
    }
    assert resumed["output"]["error_cause"] == "ConnectionRefusedError"  # __cause__ survived the replay

    # Replayed values equal what the first process recorded (now() and uuid4() above all).
    events = default_store().load_events(execution_id)
    recorded = {e.name: e.value for e in events if e.type is EventType.STEP_COMPLETED}
    assert resumed["output"]["now"] == recorded["now"].isoformat()
    assert resumed["output"]["uuid"] == str(recorded["uuid4"])
    assert [e.step_id for e in events if e.type is EventType.STEP_FAILED] == ["4"]  # not re-run on replay

    # And this process reads them back with their types.
    from helpers.typesflow import typed

    output = typed.status(execution_id).output
    assert output["issued"] == WHEN and type(output["issued"]) is dt.datetime
    assert output["issued"].tzinfo is not None
    assert output["invoice"] == INVOICE and type(output["invoice"]) is Invoice
    assert output["order"] == ORDER and type(output["order"]) is Order
    assert type(output["error"]) is OrderRejected
    assert (output["error"].order, output["error"].reason) == (ORDER.id, "no stock")
    assert output["now"] == recorded["now"] and output["now"].tzinfo is not None
    assert output["uuid"] == recorded["uuid4"] and type(output["uuid"]) is uuid.UUID


def test_a_finished_execution_read_by_id_in_a_new_process_keeps_its_types(
    workflow_env: dict[str, str],
) -> None:
    first = run(workflow_env, "new", json.dumps("straight through"))
    assert first["status"] == "completed"
    again = run(workflow_env, "run", first["execution_id"])
    assert again == first  # same values, same types, seen from another process


def test_a_failed_step_is_raised_as_its_type_in_another_process(workflow_env: dict[str, str]) -> None:
    from helpers.typesflow import OrderRejected

    paused = run(workflow_env, "new", json.dumps("pause"))
    events = default_store().load_events(paused["execution_id"])
    failed = next(e for e in events if e.type is EventType.STEP_FAILED)
    error = failed.value
    assert type(error) is OrderRejected
    assert type(error.__cause__) is ConnectionRefusedError
    assert str(error.__cause__) == "warehouse offline"
