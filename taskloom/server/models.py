"""The API's request and response bodies as pydantic models: FastAPI validates and documents from these.

A request that does not fit its model is refused before the route runs, and
:func:`taskloom.server.app.create_app` words pydantic's error as ``{"error": ..., "type": ...}`` naming
the field. The constraints here are the whole of the request validation; the OpenAPI document at
``/openapi.json`` (and the page at ``/docs``) is generated from them.

The status names are spelled out as ``Literal`` types so that mypy and the schema both see them;
``tests/integration/test_server.py`` checks they match :class:`~taskloom.store.base.ExecutionStatus`
and :class:`~taskloom.store.instances.InstanceStatus`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from taskloom.events import EventType
from taskloom.executions import MAX_EXECUTION_ID_LENGTH

#: longest execution id, workflow name or filter the server passes to the store
MAX_TEXT_LENGTH = 500
#: longest instance id, session id or name, task name or target accepted
MAX_NAME_LENGTH = 200
#: most instances one POST /instances may queue
MAX_BATCH = 10_000
#: the largest max_parallel accepted
MAX_PARALLEL = 1_000_000
#: most executions one list request returns
MAX_LIST_LIMIT = 1000
#: the largest seq accepted in ``?after=``
MAX_SEQ = 2**62

# Every store can hold these: no NUL (PostgreSQL refuses it in text); a lone surrogate is refused by
# pydantic's str itself. NON_BLANK also needs a character that is not white space.
NO_NUL = r"^[^\x00]*$"
NON_BLANK = r"^[^\x00]*[^\x00\s][^\x00]*$"
#: ``module:qualname`` of a function: dotted identifiers on both sides of one colon
_DOTTED = r"[^\W\d]\w*(\.[^\W\d]\w*)*"
TARGET = rf"^{_DOTTED}:{_DOTTED}$"
#: an event or update seq in ``Last-Event-ID``: ASCII digits only (18 always fit a 64-bit seq)
SEQ_HEADER = r"^[0-9]{1,18}$"

ExecutionStatusName = Literal["queued", "running", "paused", "completed", "failed", "cancelled"]
InstanceStatusName = Literal["queued", "running", "completed", "failed", "cancelled"]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH, pattern=NON_BLANK)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH, pattern=NON_BLANK)]
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class _Request(BaseModel):
    """A request body: unknown fields are refused (a typo is not silently ignored)."""

    model_config = ConfigDict(extra="forbid")


# -- executions -----------------------------------------------------------------------------------------
class StartRequest(_Request):
    workflow: Text = Field(
        description="a workflow name, or module:qualname, from the modules the server was started with"
    )
    input: Any = Field(None, description="the workflow's input (ctx.input)")
    execution_id: str | None = Field(
        None,
        description=(
            "your own id for the execution (an idempotency key): created if no execution has it, else that "
            f"execution is returned as it is (200, created false). Non-empty, at most {MAX_EXECUTION_ID_LENGTH} "
            "characters, no control characters."
        ),
    )
    delay: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="seconds from now before which no worker starts it"
    )
    queue: Name | None = Field(
        None, description="the queue it waits on (taskloom.Queue); workers serving it claim it. Default: 'default'"
    )
    priority: int = Field(0, ge=-(2**31), lt=2**31, description="lower runs first among its queue's executions")


class ResumeRequest(_Request):
    input: Any = Field(None, description="what the pending pause() returns")


class MessageRequest(_Request):
    topic: Text = Field(description="the topic a receive(topic) in the workflow takes it from")
    value: Any = Field(None, description="the message; what that receive returns")
    idempotency_key: Text | None = Field(
        None,
        max_length=255,
        description="a send with a key the execution was already sent with stores nothing and answers that "
        "message's seq: retry a request you are not sure arrived with the same key",
    )


class MessageSent(BaseModel):
    execution_id: str
    topic: str
    seq: int = Field(description="the message's place among all messages: a topic's are received in seq order")


class Started(BaseModel):
    execution_id: str
    workflow: str
    status: ExecutionStatusName = Field(description="queued when created; the existing execution's status else")
    created: bool = Field(True, description="false when an execution with the requested execution_id existed")


class Accepted(BaseModel):
    execution_id: str
    status: ExecutionStatusName


class ExecutionSummary(BaseModel):
    execution_id: str
    workflow: str
    target: str | None = Field(description="module:qualname of the workflow's code")
    status: ExecutionStatusName
    parent_id: str | None = Field(
        None, description="the execution that started this one as a child workflow; null for a top-level one"
    )
    version: str | None = Field(
        None,
        description="the workflow version it runs on (@workflow(version=...)); null for none, or while no code ran it",
    )
    created_at: DateTime
    updated_at: DateTime
    output: Any = Field(description="result (completed) or {type, message} (failed), as a JSON view")


class Execution(ExecutionSummary):
    input: Any = Field(description="the workflow's input, as a JSON view")


class ExecutionList(BaseModel):
    executions: list[ExecutionSummary]
    next_cursor: str | None = Field(
        None, description="pass as ?cursor= for the page after this one; null on the last page"
    )


class ErrorDetail(BaseModel):
    type: str = Field(description="the exception's class")
    message: str


class ExecutionError(BaseModel):
    """Why a failed execution failed: its exception, the causes below it and the stored traceback."""

    execution_id: str
    type: str = Field(description="the exception's class")
    message: str
    traceback: str | None = Field(description="the traceback stored when it was raised, if one was")
    causes: list[ErrorDetail] = Field(description="its __cause__ chain, nearest first")


class Event(BaseModel):
    seq: int = Field(ge=1)
    type: EventType
    timestamp: DateTime
    step_id: str | None = Field(description="the step's call position: '3', '3.1'")
    name: str | None
    data: dict[str, Any] = Field(description="progress, log message, attempt, error text, ...")
    value: Any = Field(None, description="the step's result, error or resume input, as a JSON view (when it has one)")


class EventList(BaseModel):
    execution_id: str
    status: ExecutionStatusName
    events: list[Event]


class StreamEnd(BaseModel):
    """The data of the ``end`` event that closes an execution's stream."""

    execution_id: str
    status: ExecutionStatusName | None
    last_seq: int


# -- task instances -------------------------------------------------------------------------------------
class InstanceRequest(_Request):
    instance_id: Name = Field(description="chosen by the client; queuing an existing id again does nothing")
    session_id: Name = Field(description="the client Session; max_parallel is counted per session and task")
    session_name: Name | None = None
    task: Name = Field(description="the task's name")
    target: Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH, pattern=TARGET)] = Field(
        description="module:qualname of the task's function, which a worker imports"
    )
    max_parallel: int = Field(1, ge=1, le=MAX_PARALLEL, strict=True)
    args: list[Any] = Field(default_factory=list, description="positional arguments (JSON values)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments (JSON values)")


class StartInstancesRequest(_Request):
    instances: list[InstanceRequest] = Field(min_length=1, max_length=MAX_BATCH)


class InstancesQueued(BaseModel):
    count: int
    created: int = Field(description="how many ids were new")
    status: Literal["queued"]


class Instance(BaseModel):
    instance_id: str
    session_id: str
    task: str
    target: str
    max_parallel: int
    status: InstanceStatusName
    stop_requested: bool
    attempts: int = Field(description="claims by workers; more than 1 after a worker died")
    result: Any = Field(description="the JSON view of the return value (completed), else null")
    error: dict[str, Any] | None = Field(description="{type, module, message} of the exception (failed), else null")
    created_at: DateTime
    started_at: DateTime | None
    finished_at: DateTime | None


class InstanceAccepted(BaseModel):
    instance_id: str
    status: InstanceStatusName


class SessionSummary(BaseModel):
    session_id: str
    name: str
    created_at: DateTime
    instances: int = Field(description="instances queued in it")
    unfinished: int = Field(description="of those, how many are queued or running")


class SessionList(BaseModel):
    sessions: list[SessionSummary]


class SessionEnd(BaseModel):
    session_id: str
    last_seq: int


# -- workers --------------------------------------------------------------------------------------------
class Worker(BaseModel):
    """A live worker: what it serves and the running executions leased to it."""

    worker_id: str
    process: str = Field(description="host:pid of the worker process")
    last_seen: DateTime
    seconds_since_seen: float = Field(ge=0, description="by the server's clock, when the list was read")
    workflows: list[str] = Field(description="the workflows it runs")
    tasks: list[str] = Field(description="module:qualname of the task targets it runs as instances")
    holds: list[str] = Field(description="ids of the running executions leased to it")


class WorkerList(BaseModel):
    workers: list[Worker]
    seen_within_seconds: float = Field(description="a worker not seen for this long is left out (gone)")


# -- schedules, messages, children ---------------------------------------------------------------------
class Schedule(BaseModel):
    """A schedule (``@workflow(schedule=...)``, ``wf.schedule(...)``): times in the schedule's time zone."""

    name: str
    workflow: str
    cron: str
    timezone: str
    catchup: Literal["latest", "all", "none"]
    paused: bool
    input: Any = Field(description="the input each tick's execution gets, as a JSON view")
    last_tick: DateTime = Field(description="every tick up to this one was started or skipped")
    next_tick: DateTime | None = Field(description="the next tick to start; null while paused or if none is left")


class ScheduleList(BaseModel):
    schedules: list[Schedule]


class Message(BaseModel):
    """A message sent to an execution, read or not."""

    seq: int
    topic: str
    value: Any = Field(description="the message, as a JSON view")
    sent_at: DateTime
    received_step: str | None = Field(description="the receive step that took it; null while unread")
    received_at: DateTime | None


class MessageList(BaseModel):
    execution_id: str
    messages: list[Message]


class ChildList(BaseModel):
    execution_id: str
    children: list[ExecutionSummary] = Field(description="the child workflows it started, in step order")


# -- queues -----------------------------------------------------------------------------------------------
class RateLimit(BaseModel):
    count: int = Field(ge=1, description="at most this many starts...")
    seconds: float = Field(gt=0, description="...in any window of this many seconds")


class Queue(BaseModel):
    """A queue (``taskloom.Queue``): its limits (null: none) and its executions now."""

    name: str
    concurrency: int | None = Field(description="most executions of it running at once, across all workers")
    worker_concurrency: int | None = Field(description="most executions of it running at once on one worker")
    rate_limit: RateLimit | None
    queued: int = Field(ge=0, description="executions waiting for a worker (the queue's depth)")
    running: int = Field(ge=0, description="executions running now")


class QueueList(BaseModel):
    queues: list[Queue]


# -- secrets, health, errors ----------------------------------------------------------------------------
class SecretValue(_Request):
    value: str = Field(description="the secret; never returned")


class SecretNames(BaseModel):
    names: list[str]


class TokenRequest(BaseModel):
    """A named token to make (``POST /tokens``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="1-100 letters, digits, '.', '_' or '-'", min_length=1, max_length=100)
    role: Literal["read", "operate", "admin"] = Field(description="what the token may do")


class TokenView(BaseModel):
    """A named token without its value (only a digest is stored)."""

    name: str
    role: Literal["read", "operate", "admin"]
    created_at: str = Field(description="ISO 8601 with offset")
    revoked_at: str | None
    last_used_at: str | None = Field(description="to the minute: uses are noted at most once a minute")


class NewToken(TokenView):
    token: str = Field(description="the token itself, shown this once only")


class TokenList(BaseModel):
    tokens: list[TokenView]


class Identity(BaseModel):
    """Who the request's token is: the dashboard hides what its role may not do."""

    name: str
    role: Literal["read", "operate", "admin"]


class Health(BaseModel):
    status: Literal["ok"]


class Error(BaseModel):
    """Every refusal and failure: what went wrong and what to do, and the taskloom error a client raises."""

    error: str = Field(description="what went wrong and what to do about it")
    type: str | None = Field(None, description="the taskloom error a client raises for it")


_ERROR_TEXT = {
    400: "a header is malformed (a Last-Event-ID that is not an ASCII seq); the message names it",
    401: "no API token, or a wrong one (see the WWW-Authenticate header)",
    403: "the token's role does not allow this route (read < operate < admin); the message names both roles",
    404: "no such execution, workflow, instance, secret, schedule or route",
    409: (
        "the execution or instance is not in a state that allows this (not paused, already finished), or no "
        "worker serves a task target that POST /instances was asked to queue"
    ),
    413: "the request body is too large",
    415: "the request body is not JSON",
    422: "the request is malformed; the message names the field or parameter at fault",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error responses ``codes`` of an operation, for a route's ``responses=``.

    The content is given as JSON explicitly (rather than ``model=Error``, which FastAPI would list under
    the route's own media type: ``text/event-stream`` for a stream).
    """
    content = {"application/json": {"schema": Error.model_json_schema()}}
    described: dict[int | str, dict[str, Any]] = {}
    if 401 in codes and 403 not in codes:  # every route behind a token may refuse a token's role
        codes = (*codes, 403)
    for code in sorted(codes):
        described[code] = {"description": _ERROR_TEXT[code], "content": content}
        if code == 401:
            described[code]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return described
