"""Routes about executions: start (queue for a worker), list, status, events, live stream, resume, cancel.

The server never runs workflow code: starting or resuming an execution queues it, and a worker
(``taskloom worker MODULE``) claims and runs it. Every store call runs in the thread pool.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from taskloom.executions import queue_execution, record_cancel, record_resume
from taskloom.server.http import (
    ApiError,
    JSONResponse,
    ServerState,
    clean_text,
    execution_view,
    in_thread,
    last_event_id,
    query_int,
    read_json_object,
    route,
    state,
)
from taskloom.server.openapi import errors, json_content, ref
from taskloom.server.sse import event_stream
from taskloom.store.base import ExecutionRecord, ExecutionStatus

#: most executions one list request returns
MAX_LIST_LIMIT = 1000


async def load_execution(server: ServerState, execution_id: str) -> ExecutionRecord:
    """The execution ``execution_id`` or 404 (never naming the store, whose URL may hold a password)."""
    clean_text(execution_id, "execution id", status=404)
    record = await in_thread(server.store.get_execution, execution_id)
    if record is None:
        raise ApiError(404, f"no execution {execution_id!r}", kind="ExecutionNotFoundError")
    return record


async def start_execution(request: Request) -> Response:
    server = state(request)
    body = await read_json_object(request, fields=("workflow", "input"), required=("workflow",))
    named = body["workflow"]
    if not isinstance(named, str) or not named.strip():
        raise ApiError(422, "field 'workflow' must be a non-empty string: a workflow name or module:qualname")
    wf = server.resolve_workflow(clean_text(named, "field 'workflow'", status=404))
    execution_id = await in_thread(queue_execution, server.store, wf.name, wf.target, body.get("input"))
    return JSONResponse(
        {"execution_id": execution_id, "workflow": wf.name, "status": ExecutionStatus.QUEUED},
        status_code=201,
        headers={"Location": f"/executions/{execution_id}"},
    )


async def list_executions(request: Request) -> Response:
    server = state(request)
    workflow = request.query_params.get("workflow") or None
    if workflow is not None:
        clean_text(workflow, "query parameter 'workflow'")
    status = request.query_params.get("status") or None
    if status is not None and status not in ExecutionStatus.ALL:
        raise ApiError(
            422, f"query parameter 'status' must be one of {', '.join(ExecutionStatus.ALL)}, got {status[:40]!r}"
        )
    limit = query_int(request, "limit", default=100, minimum=1, maximum=MAX_LIST_LIMIT)

    def listing() -> list[dict[str, Any]]:
        records = server.store.list_executions(workflow=workflow, status=status, limit=limit)
        return [execution_view(record, values=("output",)) for record in records]

    return JSONResponse({"executions": await in_thread(listing)})


async def get_execution(request: Request) -> Response:
    record = await load_execution(state(request), request.path_params["execution_id"])
    return JSONResponse(await in_thread(execution_view, record))


async def list_events(request: Request) -> Response:
    server = state(request)
    record = await load_execution(server, request.path_params["execution_id"])
    after = query_int(request, "after", default=0, minimum=0, maximum=2**62)

    def views() -> list[dict[str, Any]]:
        return [event.to_json() for event in server.store.load_events(record.id, after)]

    return JSONResponse({"execution_id": record.id, "status": record.status, "events": await in_thread(views)})


async def stream_events(request: Request) -> Response:
    server = state(request)
    record = await load_execution(server, request.path_params["execution_id"])
    after = query_int(request, "after", default=0, minimum=0, maximum=2**62)
    after = last_event_id(request, after, "an event seq")
    if request.method == "HEAD":  # headers only: do not hold a stream open for nobody
        return Response(media_type="text/event-stream")
    return event_stream(server, record.id, after)


async def resume_execution(request: Request) -> Response:
    server = state(request)
    record = await load_execution(server, request.path_params["execution_id"])
    body = await read_json_object(request, fields=("input",))
    await in_thread(_resume, server, record.id, body.get("input"))
    return JSONResponse({"execution_id": record.id, "status": ExecutionStatus.QUEUED}, status_code=202)


def _resume(server: ServerState, execution_id: str, value: Any) -> None:
    record_resume(server.store, execution_id, value, status=ExecutionStatus.QUEUED)


async def cancel_execution(request: Request) -> Response:
    server = state(request)
    record = await load_execution(server, request.path_params["execution_id"])
    await in_thread(record_cancel, server.store, record.id)
    return JSONResponse({"execution_id": record.id, "status": ExecutionStatus.CANCELLED}, status_code=202)


routes: list[BaseRoute] = [
    route("/executions", get=list_executions, post=start_execution),
    route("/executions/{execution_id}", get=get_execution),
    route("/executions/{execution_id}/events", get=list_events),
    route("/executions/{execution_id}/stream", get=stream_events),
    route("/executions/{execution_id}/resume", post=resume_execution),
    route("/executions/{execution_id}/cancel", post=cancel_execution),
]


# -- OpenAPI -----------------------------------------------------------------------------------------
_ID = {
    "name": "execution_id",
    "in": "path",
    "required": True,
    "description": "the execution's id, as returned by POST /executions",
    "schema": {"type": "string", "minLength": 1},
}
_AFTER = {
    "name": "after",
    "in": "query",
    "required": False,
    "description": "only events with a seq greater than this",
    "schema": {"type": "integer", "minimum": 0, "default": 0},
}

openapi_paths: dict[str, Any] = {
    "/executions": {
        "post": {
            "operationId": "startExecution",
            "summary": "Start a workflow: queue a new execution for a worker",
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("StartRequest")}}},
            "responses": {
                "201": json_content(ref("Started"), "queued; a worker running the workflow's module will claim it"),
                **errors(401, 404, 413, 415, 422),
            },
        },
        "get": {
            "operationId": "listExecutions",
            "summary": "List executions, newest first",
            "parameters": [
                {"name": "workflow", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "status", "in": "query", "required": False, "schema": ref("ExecutionStatus")},
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "default": 100},
                },
            ],
            "responses": {"200": json_content(ref("ExecutionList"), "the executions"), **errors(401, 422)},
        },
    },
    "/executions/{execution_id}": {
        "get": {
            "operationId": "getExecution",
            "summary": "An execution's status, input and output (as JSON views)",
            "parameters": [_ID],
            "responses": {"200": json_content(ref("Execution"), "the execution"), **errors(401, 404)},
        }
    },
    "/executions/{execution_id}/events": {
        "get": {
            "operationId": "listEvents",
            "summary": "An execution's events in order",
            "parameters": [_ID, _AFTER],
            "responses": {"200": json_content(ref("EventList"), "the events"), **errors(401, 404, 422)},
        }
    },
    "/executions/{execution_id}/stream": {
        "get": {
            "operationId": "streamEvents",
            "summary": "Live events as Server-Sent Events, until the execution finishes or pauses",
            "description": (
                "Each event is sent as `id: <seq>`, `event: <type>`, `data: <Event as JSON>`. The stream ends with "
                '`event: end` and `data: {"execution_id", "status", "last_seq"}` once the execution has finished or '
                "paused. Reconnect with the `Last-Event-ID` header (or `?after=`) to continue after a seq."
            ),
            "parameters": [
                _ID,
                _AFTER,
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                },
            ],
            "responses": {
                "200": {
                    "description": "an event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **errors(400, 401, 404, 422),
            },
        }
    },
    "/executions/{execution_id}/resume": {
        "post": {
            "operationId": "resumeExecution",
            "summary": "Resume a paused execution with input; a worker continues it",
            "parameters": [_ID],
            "requestBody": {"required": False, "content": {"application/json": {"schema": ref("ResumeRequest")}}},
            "responses": {
                "202": json_content(ref("Accepted"), "queued for a worker with its resume input"),
                **errors(401, 404, 409, 413, 415, 422),
            },
        }
    },
    "/executions/{execution_id}/cancel": {
        "post": {
            "operationId": "cancelExecution",
            "summary": "Cancel an unfinished execution; a running one stops at its next step",
            "parameters": [_ID],
            "responses": {"202": json_content(ref("Accepted"), "cancelled"), **errors(401, 404, 409)},
        }
    },
}
