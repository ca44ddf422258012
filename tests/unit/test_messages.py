"""Messages in one process, on both stores: ``taskloom.send`` and ``await receive(topic, timeout)``.

What is checked: messages sent before the workflow asks are kept; a topic's messages arrive in the order
sent, topics apart; a receive with nothing to read pauses the execution (``receive:<topic>``) and a send
plus ``wf.run(execution_id=...)`` continues it; replays return the same messages and take no others;
a timeout returns None, durably; wrong use is a clear error; and the store's part (the take fenced by
the lease, at most one message per step, a send during a pause's write wakes the execution).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

import taskloom
from taskloom import (
    ExecutionNotFoundError,
    ExecutionStateError,
    SerializationError,
    WorkflowError,
    WorkflowExecutionContext,
    task,
    workflow,
)
from taskloom.errors import LeaseLostError
from taskloom.events import EventType, NewEvent
from taskloom.executions import record_resume
from taskloom.store import default_store
from taskloom.tasks import pause, receive


def messages(execution_id: str) -> list[tuple[str, Any, str | None]]:
    """(topic, value, step that took it) of each message the execution was sent, in order."""
    from taskloom import serde

    return [(m.topic, serde.loads(m.value), m.received_step) for m in default_store().list_messages(execution_id)]


def pause_name(ctx: WorkflowExecutionContext[Any]) -> str | None:
    pauses = [e for e in ctx.events if e.type is EventType.EXECUTION_PAUSED]
    return pauses[-1].name if pauses else None


@task
def shout(text: str) -> str:
    return text.upper()


@workflow
async def three_of_a_topic(ctx: WorkflowExecutionContext[None]) -> list[Any]:
    first = await receive("orders")
    other = await receive("notes")
    rest = [await receive("orders"), await receive("orders")]
    return [first, other, *rest]


def test_messages_sent_before_the_workflow_asks_are_kept_and_come_in_order_per_topic() -> None:
    execution_id = three_of_a_topic.create(None, status="queued")
    for topic, value in [("orders", 1), ("notes", "n"), ("orders", 2), ("orders", {"three": 3})]:
        taskloom.send(execution_id, topic, value)
    ctx = three_of_a_topic.run(execution_id=execution_id)
    assert ctx.status == "completed", ctx.output
    assert ctx.output == [1, "n", 2, {"three": 3}]
    assert messages(execution_id) == [
        ("orders", 1, "1"),
        ("notes", "n", "2"),
        ("orders", 2, "3"),
        ("orders", {"three": 3}, "4"),
    ]


@workflow
async def echo_twice(ctx: WorkflowExecutionContext[None]) -> list[str]:
    first = await receive("say")
    loud = await shout(first)
    second = await receive("say")
    return [loud, await shout(second)]


def test_a_receive_with_nothing_to_read_pauses_and_a_send_lets_the_next_run_continue() -> None:
    ctx = echo_twice.run()
    assert ctx.status == "paused"
    assert pause_name(ctx) == "receive:say"
    assert taskloom.send(ctx.execution_id, "say", "hello") > 0
    ctx = echo_twice.run(execution_id=ctx.execution_id)
    assert ctx.status == "paused" and pause_name(ctx) == "receive:say"  # the second receive waits
    # A run with no new message continues nothing: the receive waits again (None only means a timeout).
    ctx = echo_twice.run(execution_id=ctx.execution_id)
    assert ctx.status == "paused" and pause_name(ctx) == "receive:say"
    taskloom.send(ctx.execution_id, "say", "again")
    ctx = echo_twice.run(execution_id=ctx.execution_id)
    assert ctx.status == "completed", ctx.output
    assert ctx.output == ["HELLO", "AGAIN"]
    resumed = [e for e in ctx.events if e.type is EventType.EXECUTION_RESUMED]
    assert [(e.name, e.value) for e in resumed] == [("receive:say", "hello"), ("receive:say", "again")]


@workflow
async def receive_then_approve(ctx: WorkflowExecutionContext[None]) -> list[Any]:
    got = [await receive("t"), await receive("t")]
    got.append(await pause("approve"))
    return got


def test_a_replay_returns_the_same_messages_and_takes_no_other() -> None:
    ctx = receive_then_approve.run()
    for value in ("a", "b", "c"):
        taskloom.send(ctx.execution_id, "t", value)
    ctx = receive_then_approve.run(execution_id=ctx.execution_id)
    assert ctx.status == "paused" and pause_name(ctx) == "approve"
    ctx = receive_then_approve.resume(ctx.execution_id, "yes")  # replays both receives
    assert ctx.output == ["a", "b", "yes"]
    assert messages(ctx.execution_id) == [("t", "a", "1"), ("t", "b", "2"), ("t", "c", None)]


@workflow
async def wait_a_little(ctx: WorkflowExecutionContext[float]) -> list[Any]:
    first = await receive("late", timeout=dt.timedelta(seconds=ctx.input))
    return [first, await receive("late", timeout=0)]


def _wait_until(deadline: float) -> None:
    while time.time() < deadline:  # the behaviour under test is time passing: wait it out
        time.sleep(deadline - time.time())


def test_a_timeout_returns_none_once_its_deadline_passed_and_stays_none_on_replay() -> None:
    ctx = wait_a_little.run(0.3)
    assert ctx.status == "paused"
    deadline = next(e for e in ctx.events if e.type is EventType.EXECUTION_PAUSED).data["deadline"]
    assert ctx.status == "paused" and wait_a_little.run(execution_id=ctx.execution_id).status == "paused"
    _wait_until(deadline)
    ctx = wait_a_little.run(execution_id=ctx.execution_id)
    assert ctx.status == "completed" and ctx.output == [None, None]
    timed_out = [e for e in ctx.events if e.type is EventType.STEP_COMPLETED and e.name == "receive"]
    assert [e.data.get("timed_out") for e in timed_out] == [True, True]


def test_a_message_waiting_at_the_deadline_wins_over_the_timeout() -> None:
    ctx = wait_a_little.run(0.2)
    deadline = next(e for e in ctx.events if e.type is EventType.EXECUTION_PAUSED).data["deadline"]
    _wait_until(deadline)
    taskloom.send(ctx.execution_id, "late", "just in time")
    assert wait_a_little.run(execution_id=ctx.execution_id).output == ["just in time", None]


def test_sending_to_an_unknown_or_finished_execution_is_a_clear_error() -> None:
    with pytest.raises(ExecutionNotFoundError, match="no execution 'nope'"):
        taskloom.send("nope", "t", 1)
    ctx = wait_a_little.run(0)
    assert ctx.status == "completed"
    with pytest.raises(ExecutionStateError, match=f"execution {ctx.execution_id} is completed"):
        taskloom.send(ctx.execution_id, "t", 1)
    assert default_store().list_messages(ctx.execution_id) == []


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: taskloom.send("", "t"), "execution_id"),
        (lambda: taskloom.send(None, "t"), "execution_id"),  # type: ignore[arg-type]
        (lambda: taskloom.send("x", ""), "topic"),
        (lambda: taskloom.send("x", 3), "topic"),  # type: ignore[arg-type]
        (lambda: receive(""), "topic"),
        (lambda: receive("t", timeout=-1), "timeout"),
    ],
)
def test_wrong_arguments_are_refused_naming_them(call: Any, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()


def test_receive_outside_a_workflow_and_an_unstorable_value_are_refused() -> None:
    with pytest.raises(WorkflowError, match="only works inside a running workflow"):
        receive("t")
    ctx = echo_twice.run()
    with pytest.raises(SerializationError, match="message on topic 'say'"):
        taskloom.send(ctx.execution_id, "say", lambda: None)


def test_a_receive_wait_is_continued_by_a_message_not_by_a_resume() -> None:
    ctx = echo_twice.run()
    with pytest.raises(ExecutionStateError, match=r"waits for a message on topic 'say'.*taskloom send"):
        echo_twice.resume(ctx.execution_id, "hi")
    with pytest.raises(ExecutionStateError, match="waits for a message on topic 'say'"):
        record_resume(default_store(), ctx.execution_id, "hi")
    assert echo_twice.status(ctx.execution_id).status == "paused"


# -- the store's part --------------------------------------------------------------------------------
def _receipt(step_id: str) -> Any:
    def events(seq: int, value: bytes | None) -> list[NewEvent]:
        return [
            NewEvent(EventType.STEP_STARTED, step_id, "receive"),
            NewEvent(EventType.STEP_COMPLETED, step_id, "receive", value, {"message": seq}),
        ]

    return events


def test_the_store_take_is_fenced_by_the_lease_and_a_step_takes_one_message() -> None:
    store = default_store()
    execution_id = "fenced"
    store.create_execution(execution_id, "w", None, "running", lease_owner="me", lease_seconds=30)
    first = store.send_message(execution_id, "t", b"1", wake_pause="receive:t")
    second = store.send_message(execution_id, "t", b"2", wake_pause="receive:t")
    assert second > first
    with pytest.raises(LeaseLostError):
        store.receive_message(execution_id, "t", "1", _receipt("1"), lease_owner="someone else")
    assert store.receive_message(execution_id, "t", "1", _receipt("1"), lease_owner="me") == (first, b"1")
    with pytest.raises(Exception):  # noqa: B017 - the store refuses a second message for one step
        store.receive_message(execution_id, "t", "1", _receipt("1"), lease_owner="me")
    assert store.receive_message(execution_id, "other", "2", _receipt("2"), lease_owner="me") is None
    assert [(m.seq, m.received_step) for m in store.list_messages(execution_id)] == [(first, "1"), (second, None)]
    completed = [e for e in store.load_events(execution_id) if e.type is EventType.STEP_COMPLETED]
    assert [(e.step_id, e.raw_value, e.data) for e in completed] == [("1", b"1", {"message": first})]


def test_a_message_sent_while_the_receive_was_pausing_makes_it_due() -> None:
    store = default_store()
    store.create_execution("racing", "w", None, "running", lease_owner="me", lease_seconds=30)
    store.send_message("racing", "t", b"x", wake_pause="receive:t")  # before the pause is written
    pause = NewEvent(EventType.EXECUTION_PAUSED, "1", "receive:t")
    store.append_events(
        "racing",
        [pause],
        status="paused",
        wake_at=None,
        lease_owner="me",
        expected_status="running",
        wake_on_message="t",
    )
    store.release_execution("racing", "me", requeue=False)
    claimed = store.claim_next_execution("worker", 30, ["w"])
    assert claimed is not None and claimed.id == "racing"


def test_a_send_makes_only_the_receive_of_its_topic_due() -> None:
    store = default_store()
    for execution_id, waits_at in (("on-t", "receive:t"), ("on-u", "receive:u"), ("plain", "t")):
        store.create_execution(execution_id, "w", None, "running", lease_owner="me", lease_seconds=30)
        event = NewEvent(EventType.EXECUTION_PAUSED, "1", waits_at)
        store.append_events(execution_id, [event], status="paused", lease_owner="me", expected_status="running")
        store.release_execution(execution_id, "me", requeue=False)
        store.send_message(execution_id, "t", b"x", wake_pause="receive:t")
    claimed = store.claim_next_execution("worker", 30, ["w"])
    assert claimed is not None and claimed.id == "on-t"
    assert store.claim_next_execution("worker", 30, ["w"]) is None


@workflow
async def two_orders(ctx: WorkflowExecutionContext[None]) -> list[Any]:
    return [await receive("orders"), await receive("orders")]


def test_a_send_retried_with_its_idempotency_key_is_delivered_once() -> None:
    execution_id = two_orders.create(None, status="queued")
    first = taskloom.send(execution_id, "orders", "book", idempotency_key="order-17")
    again = taskloom.send(execution_id, "orders", "book, sent again", idempotency_key="order-17")
    assert again == first
    assert messages(execution_id) == [("orders", "book", None)]
    paused = two_orders.run(execution_id=execution_id)  # the first receive took it; the second waits
    assert paused.status == "paused" and messages(execution_id) == [("orders", "book", "1")]
    taskloom.send(execution_id, "orders", "pen", idempotency_key="order-18")
    ctx = two_orders.run(execution_id=execution_id)
    assert ctx.status == "completed" and ctx.output == ["book", "pen"]
    # Once the execution finished, the same send still answers what it answered: it arrived.
    assert taskloom.send(execution_id, "orders", "late retry", idempotency_key="order-17") == first
    with pytest.raises(ExecutionStateError):
        taskloom.send(execution_id, "orders", "a new message", idempotency_key="order-19")


def test_sends_without_a_key_or_with_other_keys_are_each_kept() -> None:
    execution_id = two_orders.create(None, status="queued")
    seqs = [
        taskloom.send(execution_id, "orders", 1),
        taskloom.send(execution_id, "orders", 1),
        taskloom.send(execution_id, "orders", 2, idempotency_key="a"),
        taskloom.send(execution_id, "orders", 3, idempotency_key="b"),
    ]
    assert len(set(seqs)) == 4
    assert [value for _, value, _ in messages(execution_id)] == [1, 1, 2, 3]
    # A key is the execution's own: another execution may use the same one.
    other = two_orders.create(None, status="queued")
    assert taskloom.send(other, "orders", 2, idempotency_key="a") not in seqs


def test_the_store_answers_a_repeated_key_with_the_first_seq_and_writes_nothing() -> None:
    # What the store's own retry of a send whose commit it did not hear back from does.
    store = default_store()
    store.create_execution("keyed", "w", None, "running", lease_owner="me", lease_seconds=30)
    first = store.send_message("keyed", "t", b"1", wake_pause="receive:t", idempotency_key="k")
    assert store.send_message("keyed", "t", b"1", wake_pause="receive:t", idempotency_key="k") == first
    assert [m.seq for m in store.list_messages("keyed")] == [first]


@pytest.mark.parametrize("key", ["", "x" * 256, "a\x00b", 17])
def test_a_bad_idempotency_key_is_refused_naming_it(key: Any) -> None:
    execution_id = two_orders.create(None, status="queued")
    with pytest.raises(ValueError, match="idempotency_key"):
        taskloom.send(execution_id, "orders", 1, idempotency_key=key)
    assert messages(execution_id) == []
