"""Routes about executions: start (queue for a worker), list, status, events, live stream, resume, cancel.

The server never runs workflow code: starting or resuming an execution queues it, and a worker
(``taskloom worker MODULE``) claims and runs it. Every store call runs in the thread pool.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from taskloom import serde
from taskloom.errors import ExecutionIdError
from taskloom.executions import check_execution_id, create_or_find, queue_execution, record_cancel, record_resume
from taskloom.messages import send
from taskloom.server import sse
from taskloom.server.http import ApiError, ServerState, StrictJSONRoute, in_thread, state
from taskloom.server.models import (
    MAX_LIST_LIMIT,
    MAX_SEQ,
    MAX_TEXT_LENGTH,
    NO_NUL,
    SEQ_HEADER,
    Accepted,
    EventList,
    Execution,
    ExecutionError,
    ExecutionList,
    ExecutionStatusName,
    MessageRequest,
    MessageSent,
    ResumeRequest,
    Started,
    StartRequest,
    errors,
)
from taskloom.store.base import DEFAULT_QUEUE, ExecutionRecord, ExecutionStatus
from taskloom.views import execution_view

router = APIRouter(route_class=StrictJSONRoute, tags=["executions"])

Server = Annotated[ServerState, Depends(state)]
After = Annotated[int, Query(ge=0, le=MAX_SEQ, description="only events with a seq greater than this")]


ExecutionId = Annotated[
    str,
    Path(max_length=MAX_TEXT_LENGTH, pattern=NO_NUL, description="the execution's id, as returned by POST /executions"),
]


async def existing_execution(server: Server, execution_id: ExecutionId) -> ExecutionRecord:
    """The execution the path names, or 404 (never naming the store, whose URL may hold a password)."""
    record = await in_thread(server.store.get_execution, execution_id)
    if record is None:
        raise ApiError(404, f"no execution {execution_id!r}", kind="ExecutionNotFoundError")
    return record


Record = Annotated[ExecutionRecord, Depends(existing_execution)]


@router.post(
    "/executions",
    operation_id="startExecution",
    summary="Start a workflow: queue a new execution for a worker (or return the one with your execution_id)",
    status_code=201,
    response_model=Started,
    response_description="queued; a worker running the workflow's module will claim it",
    responses={
        200: {"model": Started, "description": "an execution with this execution_id existed: returned, not started"},
        **errors(401, 404, 409, 413, 415, 422),
    },
)
async def start_execution(body: StartRequest, server: Server, response: Response) -> dict[str, Any]:
    wf = server.resolve_workflow(body.workflow)
    wake_at = time.time() + body.delay if body.delay else None
    on_queue = body.queue or DEFAULT_QUEUE
    if body.execution_id is None:
        execution_id = await in_thread(
            functools.partial(queue_execution, wake_at=wake_at, queue=on_queue, priority=body.priority),
            server.store,
            wf.name,
            wf.target,
            body.input,
        )
        response.headers["Location"] = f"/executions/{execution_id}"
        return {"execution_id": execution_id, "workflow": wf.name, "status": ExecutionStatus.QUEUED, "created": True}
    try:
        execution_id = check_execution_id(body.execution_id)
    except ExecutionIdError as error:
        raise ApiError(422, str(error), kind="ExecutionIdError") from None
    existing = await in_thread(
        functools.partial(create_or_find, wake_at=wake_at, queue=on_queue, priority=body.priority),
        server.store,
        execution_id,
        wf.name,
        wf.target,
        body.input,
        ExecutionStatus.QUEUED,
    )
    response.headers["Location"] = f"/executions/{execution_id}"
    if existing is None:
        return {"execution_id": execution_id, "workflow": wf.name, "status": ExecutionStatus.QUEUED, "created": True}
    response.status_code = 200
    return {"execution_id": execution_id, "workflow": wf.name, "status": existing.status, "created": False}


@router.get(
    "/executions",
    operation_id="listExecutions",
    summary="List executions, newest first",
    response_model=ExecutionList,
    responses=errors(401, 422),
)
async def list_executions(
    server: Server,
    workflow: Annotated[str | None, Query(max_length=MAX_TEXT_LENGTH, pattern=NO_NUL)] = None,
    status: ExecutionStatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=4 * MAX_TEXT_LENGTH, description="the next_cursor of the previous page: the page after it"),
    ] = None,
    id_prefix: Annotated[
        str | None,
        Query(max_length=MAX_TEXT_LENGTH, pattern=NO_NUL, description="only executions whose id starts with this"),
    ] = None,
) -> dict[str, Any]:
    after = _decode_cursor(cursor) if cursor else None

    def listing() -> dict[str, Any]:
        records = server.store.list_executions(
            workflow=workflow or None, status=status, limit=limit, after=after, id_prefix=id_prefix or None
        )
        views = [execution_view(record, values=("output",)) for record in records]
        last = records[-1] if len(records) == limit else None
        return {"executions": views, "next_cursor": _encode_cursor(last.created_at, last.id) if last else None}

    return await in_thread(listing)


def _encode_cursor(created_at: float, execution_id: str) -> str:
    """Where a page ends, as an opaque token: ``(created_at, id)`` of its last record, as base64url JSON."""
    raw = json.dumps([created_at, execution_id], ensure_ascii=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("ascii")).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, execution_id = json.loads(raw.decode("ascii"))
        if isinstance(created_at, bool) or not isinstance(created_at, int | float) or not isinstance(execution_id, str):
            raise ValueError("not a (created_at, id) pair")
        if not math.isfinite(created_at) or "\x00" in execution_id:
            raise ValueError("out of range")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise ApiError(422, "query parameter 'cursor' is not a next_cursor this server gave") from None
    return float(created_at), execution_id


@router.get(
    "/executions/{execution_id}",
    operation_id="getExecution",
    summary="An execution's status, input and output (as JSON views)",
    response_model=Execution,
    responses=errors(401, 404, 422),
)
async def get_execution(record: Record) -> dict[str, Any]:
    return await in_thread(execution_view, record)


@router.get(
    "/executions/{execution_id}/error",
    operation_id="getExecutionError",
    summary="Why a failed execution failed: the exception, its causes and the stored traceback",
    response_model=ExecutionError,
    responses=errors(401, 404, 409, 422),
)
async def get_execution_error(record: Record) -> dict[str, Any]:
    if record.status != ExecutionStatus.FAILED:
        raise ApiError(409, f"execution {record.id} has not failed (it is {record.status})", kind="ExecutionStateError")
    return await in_thread(_error_view, record)


#: how ``serde.dumps_error`` heads the note that keeps an error's traceback text
_TRACEBACK_NOTE = "(original traceback)"


def _error_view(record: ExecutionRecord) -> dict[str, Any]:
    try:
        error = serde.loads(record.output)
    except Exception as undecodable:  # a class this server cannot import: say so rather than fail
        error = undecodable
    if not isinstance(error, BaseException):
        return {"execution_id": record.id, "type": "unknown", "message": repr(error), "traceback": None, "causes": []}
    notes = [str(note) for note in getattr(error, "__notes__", None) or ()]
    traceback = next((n[len(_TRACEBACK_NOTE) :].lstrip("\n") for n in notes if n.startswith(_TRACEBACK_NOTE)), None)
    causes: list[dict[str, str]] = []
    cause = error.__cause__
    while cause is not None and len(causes) < 8:
        causes.append({"type": type(cause).__qualname__, "message": str(cause)})
        cause = cause.__cause__
    return {
        "execution_id": record.id,
        "type": type(error).__qualname__,
        "message": str(error),
        "traceback": traceback,
        "causes": causes,
    }


@router.get(
    "/executions/{execution_id}/events",
    operation_id="listEvents",
    summary="An execution's events in order",
    response_model=EventList,
    response_model_exclude_unset=True,
    responses=errors(401, 404, 422),
)
async def list_events(server: Server, record: Record, after: After = 0) -> dict[str, Any]:
    def views() -> list[dict[str, Any]]:
        return [event.to_json() for event in server.store.load_events(record.id, after)]

    return {"execution_id": record.id, "status": record.status, "events": await in_thread(views)}


@router.get(
    "/executions/{execution_id}/stream",
    operation_id="streamEvents",
    summary="Live events as Server-Sent Events, until the execution finishes or pauses",
    description=(
        "Each event is sent as `id: <seq>`, `event: <type>`, `data: <Event as JSON>`. The stream ends with "
        '`event: end` and `data: {"execution_id", "status", "last_seq"}` (a StreamEnd) once the execution has '
        "finished or paused. Reconnect with the `Last-Event-ID` header (or `?after=`) to continue after a seq."
    ),
    response_class=EventSourceResponse,
    responses=errors(400, 401, 404, 422),
)
async def stream_events(
    server: Server,
    record: Record,
    after: After = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern=SEQ_HEADER)] = None,
) -> AsyncIterator[ServerSentEvent]:
    start = max(after, int(last_event_id or 0))
    async for message in sse.execution_events(server, record.id, start):
        yield message


@router.post(
    "/executions/{execution_id}/resume",
    operation_id="resumeExecution",
    summary="Resume a paused execution with input; a worker continues it",
    status_code=202,
    response_model=Accepted,
    response_description="queued for a worker with its resume input",
    responses=errors(401, 404, 409, 413, 415, 422),
)
async def resume_execution(server: Server, record: Record, body: ResumeRequest | None = None) -> dict[str, Any]:
    value = body.input if body is not None else None
    await in_thread(_resume, server, record.id, value)
    return {"execution_id": record.id, "status": ExecutionStatus.QUEUED}


def _resume(server: ServerState, execution_id: str, value: Any) -> None:
    record_resume(server.store, execution_id, value, status=ExecutionStatus.QUEUED)


@router.post(
    "/executions/{execution_id}/cancel",
    operation_id="cancelExecution",
    summary="Cancel an unfinished execution; a running one stops at its next step",
    status_code=202,
    response_model=Accepted,
    response_description="cancelled",
    responses=errors(401, 404, 409, 422),
)
async def cancel_execution(server: Server, record: Record) -> dict[str, Any]:
    await in_thread(record_cancel, server.store, record.id)
    return {"execution_id": record.id, "status": ExecutionStatus.CANCELLED}


@router.post(
    "/executions/{execution_id}/messages",
    operation_id="sendMessage",
    summary="Send a message to an execution, for its receive(topic); a waiting execution is made due",
    status_code=202,
    response_model=MessageSent,
    response_description="kept for the execution; a worker continues it if its receive of that topic waits",
    responses=errors(401, 404, 409, 413, 415, 422),
)
async def send_message(server: Server, record: Record, body: MessageRequest) -> dict[str, Any]:
    sending = functools.partial(send, store=server.store, idempotency_key=body.idempotency_key)
    seq = await in_thread(sending, record.id, body.topic, body.value)
    return {"execution_id": record.id, "topic": body.topic, "seq": seq}
