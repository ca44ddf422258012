"""Routes about task instances (the remote backend): queue, inspect, stop, cancel, follow a session live.

The server never runs task code: ``POST /instances`` queues instances, and workers (``taskloom worker
MODULE``) that imported the tasks' modules claim and run them. A batch with a target that no worker was
seen serving within :data:`~taskloom.store.instances.WORKER_SEEN_SECONDS` is refused whole (409, naming
the target and the command that serves it) rather than queued for nothing to run; the remote backend
waits a bounded time for such a worker (see :mod:`taskloom.backends.remote`). Arguments arrive as
JSON and are stored as JSON; results and errors go back as JSON. A client follows all of one session's
instances on one stream, ``GET /sessions/{session_id}/updates``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from taskloom.server.http import (
    ApiError,
    JSONResponse,
    ServerState,
    clean_text,
    in_thread,
    last_event_id,
    query_int,
    read_json_object,
    route,
    state,
    timestamp,
)
from taskloom.server.openapi import errors, json_content
from taskloom.server.sse import format_event
from taskloom.store.instances import (
    WORKER_SEEN_SECONDS,
    InstanceQueue,
    InstanceRecord,
    InstanceStatus,
    NewInstance,
    instance_queue_for,
)

#: most instances one POST /instances may queue
MAX_BATCH = 10_000
#: longest id, session name, task name or target accepted
MAX_NAME_LENGTH = 200
#: the largest max_parallel accepted
MAX_PARALLEL = 1_000_000
#: most updates sent in one stream message
UPDATES_PER_MESSAGE = 2000
#: how soon a live stream looks again after it found updates; it backs off to ServerState.poll_seconds
FIRST_POLL_SECONDS = 0.005

_INSTANCE_FIELDS = ("instance_id", "session_id", "session_name", "task", "target", "max_parallel", "args", "kwargs")
_REQUIRED_FIELDS = ("instance_id", "session_id", "task", "target")


def queue_of(server: ServerState) -> InstanceQueue:
    return instance_queue_for(server.store)


# -- queue ---------------------------------------------------------------------------------------------
async def start_instances(request: Request) -> Response:
    server = state(request)
    body = await read_json_object(request, fields=("instances",), required=("instances",))
    items = body["instances"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise ApiError(422, f"field 'instances' must be an array of 1 to {MAX_BATCH} instances")
    instances = [_new_instance(item, index) for index, item in enumerate(items)]
    queue = queue_of(server)
    targets = sorted({instance.target for instance in instances})
    served = await in_thread(queue.served_targets, targets, WORKER_SEEN_SECONDS)
    unserved = [target for target in targets if target not in served]
    if unserved:
        raise ApiError(409, _no_worker_message(unserved), kind="BackendError")
    created = await in_thread(queue.add_instances, instances)
    return JSONResponse({"count": len(instances), "created": created, "status": InstanceStatus.QUEUED}, status_code=201)


def _no_worker_message(unserved: list[str]) -> str:
    named = ", ".join(repr(target) for target in unserved[:5]) + (" and more" if len(unserved) > 5 else "")
    modules = " ".join(dict.fromkeys(target.split(":", 1)[0] for target in unserved[:5]))
    return (
        f"no instance worker serves task target {named} (none seen in the last {WORKER_SEEN_SECONDS:g}s); "
        f"start one with `taskloom worker {modules}` against this server's database. Nothing was queued"
    )


def _new_instance(item: Any, index: int) -> NewInstance:
    where = f"instances[{index}]"
    if not isinstance(item, dict):
        raise ApiError(422, f"{where} must be a JSON object")
    unknown = sorted(set(item) - set(_INSTANCE_FIELDS))
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r} in {where}; allowed: {', '.join(_INSTANCE_FIELDS)}")
    for name in _REQUIRED_FIELDS:
        if name not in item:
            raise ApiError(422, f"field {name!r} is required in {where}")
    text = {name: _name(item, name, where) for name in (*_REQUIRED_FIELDS, "session_name") if name in item}
    module, _, qualname = text["target"].partition(":")
    if not all(part.isidentifier() for part in (*module.split("."), *qualname.split("."))):
        raise ApiError(422, f"field 'target' of {where} must be 'module:qualname' of the task's function")
    max_parallel = item.get("max_parallel", 1)
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or not 1 <= max_parallel <= MAX_PARALLEL:
        raise ApiError(422, f"field 'max_parallel' of {where} must be an integer from 1 to {MAX_PARALLEL}")
    args, kwargs = item.get("args", []), item.get("kwargs", {})
    if not isinstance(args, list):
        raise ApiError(422, f"field 'args' of {where} must be an array")
    if not isinstance(kwargs, dict):
        raise ApiError(422, f"field 'kwargs' of {where} must be an object")
    try:
        arguments = json.dumps({"args": args, "kwargs": kwargs}, ensure_ascii=True, separators=(",", ":"))
    except (RecursionError, ValueError):
        raise ApiError(422, f"the arguments of {where} are nested too deeply") from None
    return NewInstance(
        instance_id=text["instance_id"],
        session_id=text["session_id"],
        session_name=text.get("session_name", text["session_id"]),
        task=text["task"],
        target=text["target"],
        max_parallel=max_parallel,
        arguments=arguments,
    )


def _name(item: dict[str, Any], name: str, where: str) -> str:
    value = item[name]
    if not isinstance(value, str) or not value.strip():
        raise ApiError(422, f"field {name!r} of {where} must be a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise ApiError(422, f"field {name!r} of {where} is {len(value)} characters; the limit is {MAX_NAME_LENGTH}")
    return clean_text(value, f"field {name!r} of {where}")


# -- one instance --------------------------------------------------------------------------------------
def _instance_id(request: Request) -> str:
    return clean_text(request.path_params["instance_id"], "instance id", status=404)


def _not_found(instance_id: str) -> ApiError:
    return ApiError(404, f"no task instance {instance_id!r}", kind="TaskError")


async def get_instance(request: Request) -> Response:
    instance_id = _instance_id(request)
    record = await in_thread(queue_of(state(request)).get_instance, instance_id)
    if record is None:
        raise _not_found(instance_id)
    return JSONResponse(instance_view(record))


def instance_view(record: InstanceRecord) -> dict[str, Any]:
    return {
        "instance_id": record.id,
        "session_id": record.session_id,
        "task": record.task,
        "target": record.target,
        "max_parallel": record.max_parallel,
        "status": record.status,
        "stop_requested": record.stop_requested,
        "attempts": record.attempts,
        "result": json.loads(record.result) if record.result is not None else None,
        "error": json.loads(record.error) if record.error is not None else None,
        "created_at": timestamp(record.created_at),
        "started_at": timestamp(record.started_at) if record.started_at is not None else None,
        "finished_at": timestamp(record.finished_at) if record.finished_at is not None else None,
    }


async def stop_instance(request: Request) -> Response:
    return await _stop(request, cancel=False)


async def cancel_instance(request: Request) -> Response:
    return await _stop(request, cancel=True)


async def _stop(request: Request, *, cancel: bool) -> Response:
    instance_id = _instance_id(request)
    status = await in_thread(lambda: queue_of(state(request)).request_stop(instance_id, cancel=cancel))
    if status is None:
        raise _not_found(instance_id)
    if status in InstanceStatus.FINISHED and not (cancel and status == InstanceStatus.CANCELLED):
        raise ApiError(409, f"task instance {instance_id} has already finished ({status})", kind="TaskError")
    return JSONResponse({"instance_id": instance_id, "status": status}, status_code=202)


# -- a session's live updates --------------------------------------------------------------------------
async def session_updates(request: Request) -> Response:
    server = state(request)
    session_id = clean_text(request.path_params["session_id"], "session id", status=404)
    after = query_int(request, "after", default=0, minimum=0, maximum=2**62)
    after = last_event_id(request, after, "an update seq")
    if request.method == "HEAD":
        return Response(media_type="text/event-stream")
    return StreamingResponse(
        _update_messages(server, session_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _update_messages(server: ServerState, session_id: str, after: int) -> AsyncIterator[str]:
    queue = queue_of(server)
    last = after
    wait = FIRST_POLL_SECONDS
    quiet_since = time.monotonic()
    while True:
        more, updates = await in_thread(queue.load_updates, session_id, last, UPDATES_PER_MESSAGE)
        if updates:
            last = updates[-1].seq
            views = ",".join(
                f'{{"seq":{u.seq},"instance_id":{json.dumps(u.instance_id)},"kind":{json.dumps(u.kind)},"data":{u.data}}}'
                for u in updates
            )
            yield f"id: {last}\nevent: updates\ndata: [{views}]\n\n"
            wait, quiet_since = FIRST_POLL_SECONDS, time.monotonic()
            if len(updates) >= UPDATES_PER_MESSAGE:
                continue
        if not more:
            yield format_event({"session_id": session_id, "last_seq": last}, event="end")
            return
        if time.monotonic() - quiet_since >= server.keepalive_seconds:
            yield ": keepalive\n\n"
            quiet_since = time.monotonic()
        await anyio.sleep(wait)
        wait = min(wait * 2, server.poll_seconds)


routes: list[BaseRoute] = [
    route("/instances", post=start_instances),
    route("/instances/{instance_id}", get=get_instance),
    route("/instances/{instance_id}/stop", post=stop_instance),
    route("/instances/{instance_id}/cancel", post=cancel_instance),
    route("/sessions/{session_id}/updates", get=session_updates),
]


# -- OpenAPI -------------------------------------------------------------------------------------------
_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_STATUS = {"type": "string", "enum": list(InstanceStatus.ALL)}
_ID = {
    "name": "instance_id",
    "in": "path",
    "required": True,
    "description": "the instance's id, as given when it was queued",
    "schema": {"type": "string", "minLength": 1},
}
_INSTANCE_REQUEST = {
    "type": "object",
    "required": list(_REQUIRED_FIELDS),
    "additionalProperties": False,
    "properties": {
        "instance_id": {**_NAME, "description": "chosen by the client; queuing an existing id again does nothing"},
        "session_id": {**_NAME, "description": "the client Session; max_parallel is counted per session and task"},
        "session_name": _NAME,
        "task": {**_NAME, "description": "the task's name"},
        "target": {**_NAME, "description": "module:qualname of the task's function, which a worker imports"},
        "max_parallel": {"type": "integer", "minimum": 1, "maximum": MAX_PARALLEL, "default": 1},
        "args": {"type": "array", "description": "positional arguments (JSON values)", "default": []},
        "kwargs": {"type": "object", "description": "keyword arguments (JSON values)", "default": {}},
    },
}
_INSTANCE = {
    "type": "object",
    "required": [
        "instance_id",
        "session_id",
        "task",
        "target",
        "max_parallel",
        "status",
        "stop_requested",
        "attempts",
        "result",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    ],
    "properties": {
        "instance_id": {"type": "string"},
        "session_id": {"type": "string"},
        "task": {"type": "string"},
        "target": {"type": "string"},
        "max_parallel": {"type": "integer"},
        "status": _STATUS,
        "stop_requested": {"type": "boolean"},
        "attempts": {"type": "integer", "description": "claims by workers; more than 1 after a worker died"},
        "result": {"description": "the JSON view of the return value (completed), else null"},
        "error": {
            "type": ["object", "null"],
            "description": "{type, module, message} of the exception (failed), else null",
        },
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
    },
}
_SSE_EVENT = {
    "type": "object",
    "description": "one Server-Sent Event; data is JSON text (an array of updates, or the end summary)",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["updates", "end"]},
        "data": {"type": "string"},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
    },
}
_ACCEPTED = {
    "type": "object",
    "required": ["instance_id", "status"],
    "properties": {"instance_id": {"type": "string"}, "status": _STATUS},
}

openapi_paths: dict[str, Any] = {
    "/instances": {
        "post": {
            "operationId": "startInstances",
            "summary": "Queue task instances for instance workers (the remote backend sends its starts here)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["instances"],
                            "additionalProperties": False,
                            "properties": {
                                "instances": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": MAX_BATCH,
                                    "items": _INSTANCE_REQUEST,
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": json_content(
                    {
                        "type": "object",
                        "required": ["count", "created", "status"],
                        "properties": {
                            "count": {"type": "integer"},
                            "created": {"type": "integer", "description": "how many ids were new"},
                            "status": {"const": InstanceStatus.QUEUED},
                        },
                    },
                    "queued; a worker that imported the tasks' modules claims them",
                ),
                **errors(401, 409, 413, 415, 422),
            },
        }
    },
    "/instances/{instance_id}": {
        "get": {
            "operationId": "getInstance",
            "summary": "A task instance's status, and its result or error once finished",
            "parameters": [_ID],
            "responses": {"200": json_content(_INSTANCE, "the instance"), **errors(401, 404)},
        }
    },
    "/instances/{instance_id}/stop": {
        "post": {
            "operationId": "stopInstance",
            "summary": "Ask a task instance to stop: its tc.should_stop becomes True; what it returns is its result",
            "parameters": [_ID],
            "responses": {"202": json_content(_ACCEPTED, "stop requested"), **errors(401, 404, 409)},
        }
    },
    "/instances/{instance_id}/cancel": {
        "post": {
            "operationId": "cancelInstance",
            "summary": "Cancel a task instance: a queued one never runs, a running one is asked to stop",
            "parameters": [_ID],
            "responses": {"202": json_content(_ACCEPTED, "cancelled, or stop requested"), **errors(401, 404, 409)},
        }
    },
    "/sessions/{session_id}/updates": {
        "get": {
            "operationId": "sessionUpdates",
            "summary": "A session's instance updates as Server-Sent Events, until all its instances have finished",
            "description": (
                "Each message is `id: <last seq>`, `event: updates`, `data: [{seq, instance_id, kind, data}, ...]`; "
                "kind is running, progress, status, log, completed, failed or cancelled. The stream ends with "
                '`event: end` and `data: {"session_id", "last_seq"}` once no instance of the session is queued or '
                "running (at once for an unknown session). Reconnect with `Last-Event-ID` (or `?after=`)."
            ),
            "parameters": [
                {
                    "name": "session_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                },
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "only updates with a seq greater than this",
                    "schema": {"type": "integer", "minimum": 0, "default": 0},
                },
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
                    "content": {"text/event-stream": {"schema": _SSE_EVENT}},
                },
                **errors(400, 401, 404, 422),
            },
        }
    },
}
