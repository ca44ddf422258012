"""Routes about schedules: list them, pause and resume one (the dashboard's schedules page, and scripts).

Schedules are declared in code (``@workflow(schedule=...)``, ``wf.schedule(...)``) and stored by the
workers that import them, so the API creates none: it shows what is stored and switches ticking off and on,
as ``taskloom schedules list|pause|resume`` does. Pausing stops new ticks; executions already started go on.
Resuming starts from now: the ticks that fell while it was paused are skipped, not caught up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from taskloom.schedule_ticks import ScheduleError
from taskloom.schedules import Schedule, list_schedules, pause_schedule, resume_schedule
from taskloom.server.http import ApiError, ServerState, StrictJSONRoute, in_thread, state
from taskloom.server.models import MAX_TEXT_LENGTH, NO_NUL, ScheduleList, errors
from taskloom.server.models import Schedule as ScheduleModel
from taskloom.store.base import Store

router = APIRouter(route_class=StrictJSONRoute, tags=["schedules"])

Server = Annotated[ServerState, Depends(state)]
ScheduleName = Annotated[str, Path(max_length=MAX_TEXT_LENGTH, pattern=NO_NUL, description="the schedule's name")]


@router.get(
    "/schedules",
    operation_id="listSchedules",
    summary="The stored schedules, by name, with their last and next tick",
    response_model=ScheduleList,
    responses=errors(401),
)
async def get_schedules(server: Server) -> dict[str, Any]:
    schedules = await in_thread(list_schedules, server.store)
    return {"schedules": [schedule.to_json() for schedule in schedules]}


@router.post(
    "/schedules/{name}/pause",
    operation_id="pauseSchedule",
    summary="Stop a schedule from starting executions until it is resumed; running ones go on",
    response_model=ScheduleModel,
    responses=errors(401, 404, 422),
)
async def pause(server: Server, name: ScheduleName) -> dict[str, Any]:
    return await _switch(pause_schedule, server.store, name)


@router.post(
    "/schedules/{name}/resume",
    operation_id="resumeSchedule",
    summary="Start a paused schedule ticking again from now (the ticks it missed are skipped)",
    response_model=ScheduleModel,
    responses=errors(401, 404, 422),
)
async def resume(server: Server, name: ScheduleName) -> dict[str, Any]:
    return await _switch(resume_schedule, server.store, name)


async def _switch(change: Callable[[Store, str], Schedule], store: Store, name: str) -> dict[str, Any]:
    try:
        schedule = await in_thread(change, store, name)
    except ScheduleError as error:  # no such schedule: the message names the schedules there are
        raise ApiError(404, str(error), kind="ScheduleError") from None
    return schedule.to_json()
