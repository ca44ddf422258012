"""Routes about queues (:mod:`taskloom.queues`): each queue's limits and how deep it is.

A queue is listed once it was declared (a worker whose code declares it started, or a start named it)
or has unfinished executions, so an execution on a queue no worker serves shows here as depth that does
not go down. The dashboard and ``taskloom queues --server`` read this route.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from taskloom.queues import queue_view
from taskloom.server.http import ServerState, StrictJSONRoute, in_thread, state
from taskloom.server.models import QueueList, errors

router = APIRouter(route_class=StrictJSONRoute, tags=["queues"])

Server = Annotated[ServerState, Depends(state)]


@router.get(
    "/queues",
    operation_id="listQueues",
    summary="The queues: their limits, and how many executions are queued (depth) and running on each",
    response_model=QueueList,
    responses=errors(401),
)
async def list_queues(server: Server) -> dict[str, Any]:
    queues = await in_thread(server.store.list_queues)
    return {"queues": [queue_view(queue) for queue in queues]}
