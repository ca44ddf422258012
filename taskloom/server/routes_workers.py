"""Routes about workers: which are alive, what each serves and holds, when each was last seen.

A worker process registers what it serves with every heartbeat and removes itself when it stops (see
:mod:`taskloom.presence`); one killed outright drops out once it has not been seen for
:data:`~taskloom.store.instances.WORKER_SEEN_SECONDS`. The dashboard's workers page reads this route.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from taskloom.presence import live_workers
from taskloom.server.http import ServerState, StrictJSONRoute, in_thread, state
from taskloom.server.models import WorkerList, errors
from taskloom.store.instances import WORKER_SEEN_SECONDS
from taskloom.views import timestamp

router = APIRouter(route_class=StrictJSONRoute, tags=["workers"])

Server = Annotated[ServerState, Depends(state)]


@router.get(
    "/workers",
    operation_id="listWorkers",
    summary="The live workers: what each runs, the executions it holds, when it was last seen",
    response_model=WorkerList,
    responses=errors(401),
)
async def list_workers(server: Server) -> dict[str, Any]:
    workers = await in_thread(live_workers, server.store)
    now = time.time()
    return {
        "workers": [
            {
                "worker_id": worker.worker_id,
                "process": worker.process,
                "last_seen": timestamp(worker.last_seen),
                "seconds_since_seen": max(0.0, now - worker.last_seen),
                "workflows": sorted(worker.workflows),
                "tasks": sorted(worker.tasks),
                "holds": worker.holds,
            }
            for worker in workers
        ],
        "seen_within_seconds": WORKER_SEEN_SECONDS,
    }
