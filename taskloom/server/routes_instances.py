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
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from taskloom.server import sse
from taskloom.server.http import ApiError, ServerState, StrictJSONRoute, in_thread, state
from taskloom.server.models import (
    MAX_NAME_LENGTH,
    MAX_SEQ,
    NO_NUL,
    SEQ_HEADER,
    Instance,
    InstanceAccepted,
    InstanceRequest,
    InstancesQueued,
    SessionList,
    StartInstancesRequest,
    errors,
)
from taskloom.store.instances import (
    WORKER_SEEN_SECONDS,
    InstanceQueue,
    InstanceRecord,
    InstanceStatus,
    NewInstance,
    instance_queue_for,
)
from taskloom.views import timestamp

router = APIRouter(route_class=StrictJSONRoute, tags=["task instances"])

Server = Annotated[ServerState, Depends(state)]
#: most sessions one GET /sessions returns
MAX_SESSION_LIST = 500
InstanceId = Annotated[
    str,
    Path(max_length=MAX_NAME_LENGTH, pattern=NO_NUL, description="the instance's id, as given when it was queued"),
]


def queue_of(server: ServerState) -> InstanceQueue:
    return instance_queue_for(server.store)


# -- queue ---------------------------------------------------------------------------------------------
@router.post(
    "/instances",
    operation_id="startInstances",
    summary="Queue task instances for instance workers (the remote backend sends its starts here)",
    status_code=201,
    response_model=InstancesQueued,
    response_description="queued; a worker that imported the tasks' modules claims them",
    responses=errors(401, 409, 413, 415, 422),
)
async def start_instances(body: StartInstancesRequest, server: Server) -> dict[str, Any]:
    instances = [_new_instance(item, index) for index, item in enumerate(body.instances)]
    queue = queue_of(server)
    targets = sorted({instance.target for instance in instances})
    served = await in_thread(queue.served_targets, targets, WORKER_SEEN_SECONDS)
    unserved = [target for target in targets if target not in served]
    if unserved:
        raise ApiError(409, _no_worker_message(unserved), kind="BackendError")
    created = await in_thread(queue.add_instances, instances)
    return {"count": len(instances), "created": created, "status": InstanceStatus.QUEUED}


def _no_worker_message(unserved: list[str]) -> str:
    named = ", ".join(repr(target) for target in unserved[:5]) + (" and more" if len(unserved) > 5 else "")
    modules = " ".join(dict.fromkeys(target.split(":", 1)[0] for target in unserved[:5]))
    return (
        f"no instance worker serves task target {named} (none seen in the last {WORKER_SEEN_SECONDS:g}s); "
        f"start one with `taskloom worker {modules}` against this server's database. Nothing was queued"
    )


def _new_instance(item: InstanceRequest, index: int) -> NewInstance:
    try:
        arguments = json.dumps({"args": item.args, "kwargs": item.kwargs}, ensure_ascii=True, separators=(",", ":"))
    except (RecursionError, ValueError):
        raise ApiError(422, f"the arguments of instances[{index}] are nested too deeply") from None
    return NewInstance(
        instance_id=item.instance_id,
        session_id=item.session_id,
        session_name=item.session_name or item.session_id,
        task=item.task,
        target=item.target,
        max_parallel=item.max_parallel,
        arguments=arguments,
    )


# -- one instance --------------------------------------------------------------------------------------
def _not_found(instance_id: str) -> ApiError:
    return ApiError(404, f"no task instance {instance_id!r}", kind="TaskError")


@router.get(
    "/instances/{instance_id}",
    operation_id="getInstance",
    summary="A task instance's status, and its result or error once finished",
    response_model=Instance,
    responses=errors(401, 404, 422),
)
async def get_instance(server: Server, instance_id: InstanceId) -> dict[str, Any]:
    record = await in_thread(queue_of(server).get_instance, instance_id)
    if record is None:
        raise _not_found(instance_id)
    return instance_view(record)


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


@router.post(
    "/instances/{instance_id}/stop",
    operation_id="stopInstance",
    summary="Ask a task instance to stop: its tc.should_stop becomes True; what it returns is its result",
    status_code=202,
    response_model=InstanceAccepted,
    response_description="stop requested",
    responses=errors(401, 404, 409, 422),
)
async def stop_instance(server: Server, instance_id: InstanceId) -> dict[str, Any]:
    return await _stop(server, instance_id, cancel=False)


@router.post(
    "/instances/{instance_id}/cancel",
    operation_id="cancelInstance",
    summary="Cancel a task instance: a queued one never runs, a running one is asked to stop",
    status_code=202,
    response_model=InstanceAccepted,
    response_description="cancelled, or stop requested",
    responses=errors(401, 404, 409, 422),
)
async def cancel_instance(server: Server, instance_id: InstanceId) -> dict[str, Any]:
    return await _stop(server, instance_id, cancel=True)


async def _stop(server: ServerState, instance_id: str, *, cancel: bool) -> dict[str, Any]:
    status = await in_thread(lambda: queue_of(server).request_stop(instance_id, cancel=cancel))
    if status is None:
        raise _not_found(instance_id)
    if status in InstanceStatus.FINISHED and not (cancel and status == InstanceStatus.CANCELLED):
        raise ApiError(409, f"task instance {instance_id} has already finished ({status})", kind="TaskError")
    return {"instance_id": instance_id, "status": status}


# -- sessions ------------------------------------------------------------------------------------------
@router.get(
    "/sessions",
    operation_id="listSessions",
    summary="The newest sessions that queued task instances, with how many of each are unfinished",
    response_model=SessionList,
    responses=errors(401, 422),
)
async def list_sessions(server: Server, limit: Annotated[int, Query(ge=1, le=MAX_SESSION_LIST)] = 50) -> dict[str, Any]:
    sessions = await in_thread(queue_of(server).list_sessions, limit)
    return {
        "sessions": [
            {
                "session_id": session.id,
                "name": session.name,
                "created_at": timestamp(session.created_at),
                "instances": session.instances,
                "unfinished": session.unfinished,
            }
            for session in sessions
        ]
    }


# -- a session's live updates --------------------------------------------------------------------------
@router.get(
    "/sessions/{session_id}/updates",
    operation_id="sessionUpdates",
    summary="A session's instance updates as Server-Sent Events, until all its instances have finished",
    description=(
        "Each message is `id: <last seq>`, `event: updates`, `data: [{seq, instance_id, kind, data}, ...]`; "
        "kind is running, progress, status, log, completed, failed or cancelled. The stream ends with "
        '`event: end` and `data: {"session_id", "last_seq"}` once no instance of the session is queued or '
        "running (at once for an unknown session). Reconnect with `Last-Event-ID` (or `?after=`)."
    ),
    response_class=EventSourceResponse,
    responses=errors(400, 401, 404, 422),
)
async def session_updates(
    server: Server,
    session_id: Annotated[str, Path(max_length=MAX_NAME_LENGTH, pattern=NO_NUL)],
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="only updates with a seq greater than this")] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern=SEQ_HEADER)] = None,
) -> AsyncIterator[ServerSentEvent]:
    async for message in sse.session_updates(server, session_id, max(after, int(last_event_id or 0))):
        yield message
