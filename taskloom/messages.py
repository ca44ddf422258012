"""Messages: ``taskloom.send(execution_id, topic, value)`` and, in a workflow, ``await receive(topic)``.

A message is a row in the store's ``messages`` table from the moment ``send`` returns, so nothing sent
is lost, also when it is sent before the workflow asks for it. A ``receive`` is a step: it takes the
oldest unread message of its topic and records the message's value as the step's outcome, both in one
transaction, so each message is received exactly once, and a replay returns the same values without
reading the table again.

A ``receive`` with nothing to read suspends the execution like ``pause`` does: it becomes ``paused``, its
pause named ``receive:<topic>``, and releases whatever ran it (a worker's slot, or ``wf.run`` returns).
``send`` then makes it due (``wake_at`` now, and a NOTIFY on PostgreSQL), so a worker claims it at once
(PostgreSQL) or within its poll interval (SQLite, from another process), and the replay's ``receive``
takes the message. Without workers, ``wf.run(execution_id=...)`` continues it. ``send`` itself never runs
workflow code. A ``timeout`` is a durable deadline like ``pause(timeout=)``: once it passes with no
message, the ``receive`` returns None (recorded, so replays return None too).
"""

from __future__ import annotations

import time

from taskloom import serde
from taskloom.errors import ExecutionStateError, WorkflowPaused
from taskloom.events import EventType, NewEvent
from taskloom.ids import uuid4_hex
from taskloom.store import default_store
from taskloom.store.base import ExecutionRecord, Store
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from taskloom.replay import ExecutionRun, RecordedStep

#: the step name of a receive in the event log
RECEIVE = "receive"
#: a receive's pause is named this plus its topic, so every tool that shows pauses shows what it waits for
PAUSE_PREFIX = "receive:"


class ReceiveWaiting(WorkflowPaused):
    """A receive found no message: the execution pauses, and a message of ``topic`` makes it due."""

    def __init__(self, topic: str, step_id: str, deadline: float | None = None) -> None:
        super().__init__(pause_name(topic), step_id, deadline)
        self.topic = topic


def pause_name(topic: str) -> str:
    """The name of the pause of a receive waiting for ``topic``."""
    return f"{PAUSE_PREFIX}{topic}"


def waiting_topic(pause: str | None) -> str | None:
    """The topic a paused execution waits for, from its pause's name; None for a plain ``pause``."""
    if pause is None or not pause.startswith(PAUSE_PREFIX):
        return None
    return pause[len(PAUSE_PREFIX) :]


def check_topic(topic: Any, where: str) -> str:
    if not isinstance(topic, str) or not topic or "\x00" in topic:
        raise ValueError(f"{where}: topic must be a non-empty string without NUL characters, got {topic!r}")
    return topic


#: the longest idempotency key a send takes
MAX_KEY_LENGTH = 255


def send(
    execution_id: str,
    topic: str,
    value: Any = None,
    *,
    idempotency_key: str | None = None,
    store: Store | None = None,
) -> int:
    """Send ``value`` to the execution, for its ``await receive(topic)``; returns the message's seq.

    Durable when it returns. Messages of one topic are received in the order they were sent, each exactly
    once; messages sent before the workflow asks are kept. An execution waiting in ``receive(topic)`` is
    made due: a worker continues it, or else the next ``wf.run(execution_id=...)``. ``value`` is stored
    like a task's result (any value :mod:`taskloom.serde` stores). An unknown execution raises
    :class:`~taskloom.ExecutionNotFoundError`, a finished one :class:`~taskloom.ExecutionStateError`.

    ``idempotency_key``: a send with a key the execution was already sent with stores nothing and returns
    that message's seq, even once the execution finished: retry a send you are not sure arrived with the
    same key, and it is delivered once. Without one, the call gets a key of its own, so that the store
    retrying its write after a dropped connection (which may have committed) does not deliver it twice.
    """
    if not isinstance(execution_id, str) or not execution_id:
        raise ValueError(f"send(): execution_id must be a non-empty string, got {execution_id!r}")
    check_topic(topic, "send()")
    key = uuid4_hex() if idempotency_key is None else check_idempotency_key(idempotency_key, "send()")
    blob = serde.dumps(value, what=f"message on topic {topic!r}")
    return (store or default_store()).send_message(
        execution_id, topic, blob, wake_pause=pause_name(topic), idempotency_key=key
    )


def check_idempotency_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or "\x00" in key:
        raise ValueError(
            f"{where}: idempotency_key must be a non-empty string of at most {MAX_KEY_LENGTH} characters "
            f"without NUL characters, got {key!r}"
        )
    return key


def not_resumable(record: ExecutionRecord, topic: str) -> ExecutionStateError:
    """The error of a resume of an execution that waits for a message: a message continues it."""
    return ExecutionStateError(
        f"execution {record.id} of workflow {record.workflow!r} waits for a message on topic {topic!r}, not "
        f"for a resume; send one: taskloom.send({record.id!r}, {topic!r}, value) or "
        f"`taskloom send {record.id} {topic} '<JSON value>'`"
    )


async def receive_step(run: ExecutionRun, step_id: str, topic: str, timeout: float | None) -> Any:
    """The ``receive`` step at ``step_id``: its recorded value on replay, else the oldest unread message of
    ``topic``, else a durable wait (:class:`ReceiveWaiting`), or None once its deadline passed."""
    step = run.recorded(step_id, RECEIVE)
    if step is not None and step.outcome is EventType.STEP_COMPLETED:
        return run.decode(step.value, step_id, RECEIVE)
    if run.resume is not None and run.resume[0] == step_id:
        # wf.run(execution_id=...) of a receive wait continues it with None; a receive looks for a message
        # again instead (None means its timeout passed), so that resume is dropped.
        run.resume = None
    run.check_cancelled()
    waited = step is not None

    def receipt(seq: int, value: bytes | None) -> list[NewEvent]:
        data = {"topic": topic, "message": seq}
        if waited:  # the execution paused here: it continues, as after a resume (the dashboard's timeline)
            events = [NewEvent(EventType.EXECUTION_RESUMED, step_id, pause_name(topic), value, data)]
        else:
            events = [NewEvent(EventType.STEP_STARTED, step_id, RECEIVE, data={"topic": topic})]
        return [*events, NewEvent(EventType.STEP_COMPLETED, step_id, RECEIVE, value, data)]

    taken = run.take_message(topic, step_id, receipt)
    if taken is not None:
        _record(run, step_id, taken[1])
        return run.decode(taken[1], step_id, RECEIVE)
    if step is None:
        started: dict[str, Any] = {"topic": topic}
        if timeout is not None:
            started["deadline"] = time.time() + timeout
        run.append(NewEvent(EventType.STEP_STARTED, step_id, RECEIVE, data=started))
        step = _record(run, step_id, None, started)
    deadline = step.started.get("deadline")
    if deadline is not None and time.time() >= deadline:
        blob = serde.dumps(None, what=RECEIVE)
        run.append(NewEvent(EventType.STEP_COMPLETED, step_id, RECEIVE, blob, {"topic": topic, "timed_out": True}))
        step.outcome, step.value = EventType.STEP_COMPLETED, blob
        return None
    raise ReceiveWaiting(topic, step_id, deadline)


def _record(
    run: ExecutionRun, step_id: str, value: bytes | None, started: dict[str, Any] | None = None
) -> RecordedStep:
    """Note the step in the run's index, as the store now has it (a parallel branch may look it up)."""
    from taskloom.replay import RecordedStep  # replay imports the built-ins, which import this module

    step = run.steps.get(step_id) or RecordedStep(RECEIVE, started or {})
    if started is None:
        step.outcome, step.value = EventType.STEP_COMPLETED, value
    run.steps[step_id] = step
    return step
