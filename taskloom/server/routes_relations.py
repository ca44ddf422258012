"""Routes about what an execution is linked to: the messages sent to it and the child workflows it started.

Both are read for the dashboard's execution page. Messages come from the store's messages table, read and
unread (a child's wake-up messages to its parent among them, topic ``taskloom.child:<step>``). Children are
found in the parent's own log: each child is a step whose start names it (``data["child"]``, see
:mod:`taskloom.children`), so no index is needed; a child named there but not created yet (the parent's
process stopped in between) is left out until it exists. A child links back through its ``parent_id``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from taskloom.children import STEP_PREFIX
from taskloom.events import EventType
from taskloom.server.http import ServerState, StrictJSONRoute, in_thread, state
from taskloom.server.models import ChildList, MessageList, errors
from taskloom.server.routes_executions import Record
from taskloom.store.base import ExecutionRecord
from taskloom.views import execution_view, timestamp, value_view

router = APIRouter(route_class=StrictJSONRoute, tags=["executions"])

Server = Annotated[ServerState, Depends(state)]


@router.get(
    "/executions/{execution_id}/messages",
    operation_id="listMessages",
    summary="The messages sent to an execution, in seq order, received or still unread",
    response_model=MessageList,
    responses=errors(401, 404, 422),
)
async def list_messages(server: Server, record: Record) -> dict[str, Any]:
    def views() -> list[dict[str, Any]]:
        return [
            {
                "seq": message.seq,
                "topic": message.topic,
                "value": value_view(message.value),
                "sent_at": timestamp(message.sent_at),
                "received_step": message.received_step,
                "received_at": None if message.received_at is None else timestamp(message.received_at),
            }
            for message in server.store.list_messages(record.id)
        ]

    return {"execution_id": record.id, "messages": await in_thread(views)}


@router.get(
    "/executions/{execution_id}/children",
    operation_id="listChildren",
    summary="The child workflows an execution started, in the order of its steps, with their status",
    response_model=ChildList,
    responses=errors(401, 404, 422),
)
async def list_children(server: Server, record: Record) -> dict[str, Any]:
    def children() -> list[dict[str, Any]]:
        ids = [
            str(event.data["child"])
            for event in server.store.load_events(record.id)
            if event.type is EventType.STEP_STARTED
            and "child" in event.data
            and (event.name or "").startswith(STEP_PREFIX)
        ]
        found: list[ExecutionRecord | None] = [server.store.get_execution(child_id) for child_id in dict.fromkeys(ids)]
        return [execution_view(child, values=("output",)) for child in found if child is not None]

    return {"execution_id": record.id, "children": await in_thread(children)}
