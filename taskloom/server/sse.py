"""Live progress as Server-Sent Events: an execution's events, and a session's instance updates.

The routes are FastAPI path operations with ``response_class=EventSourceResponse`` that yield
:class:`fastapi.sse.ServerSentEvent` from the generators here; FastAPI writes the wire format, sends a
keep-alive comment when a stream is idle, and stops the generator when the client goes away.

- An execution's stream: each event as ``id: <seq>``, ``event: <type>``, ``data: <Event as JSON>``, so a
  browser's ``EventSource`` (or :class:`taskloom.client.TaskloomClient`) reconnects with ``Last-Event-ID``
  and continues where it stopped. It ends with ``event: end`` once the execution has finished or paused
  (data: :class:`~taskloom.server.models.StreamEnd`).
- A session's stream: ``id: <last seq>``, ``event: updates``, ``data: [{seq, instance_id, kind, data}, ...]``,
  ending with ``event: end`` once no instance of the session is queued or running.

Both poll the store in the thread pool (``ServerState.poll_seconds``); a store-side notification
(PostgreSQL LISTEN/NOTIFY) can replace the sleep later without changing the wire format. Reading the
status *before* the events is what makes an execution's end exact: a store writes the final status and
the final event in one transaction, so once the status says finished, the events read after it include
the last one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi.sse import ServerSentEvent

from taskloom.server.http import ServerState, dumps, in_thread
from taskloom.server.models import SessionEnd, StreamEnd
from taskloom.store.base import ExecutionStatus
from taskloom.store.instances import instance_queue_for

#: statuses after which no event comes without someone acting (resume)
_QUIET = ExecutionStatus.FINISHED | {ExecutionStatus.PAUSED}
#: most updates sent in one message of a session's stream
UPDATES_PER_MESSAGE = 2000
#: how soon a session's stream looks again after it found updates; it backs off to ServerState.poll_seconds
FIRST_POLL_SECONDS = 0.005


def _poll(server: ServerState, execution_id: str, after: int) -> tuple[str | None, list[dict[str, Any]]]:
    record = server.store.get_execution(execution_id)
    events = server.store.load_events(execution_id, after)
    return (record.status if record else None), [event.to_json() for event in events]


async def execution_events(server: ServerState, execution_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    """The events of ``execution_id`` after seq ``after`` as they are appended, then ``end``."""
    last = after
    while True:
        status, events = await in_thread(_poll, server, execution_id, last)
        for view in events:
            last = view["seq"]
            yield ServerSentEvent(raw_data=dumps(view), event=view["type"], id=str(last))
        if status is None or status in _QUIET:
            end = StreamEnd.model_validate({"execution_id": execution_id, "status": status, "last_seq": last})
            yield ServerSentEvent(raw_data=end.model_dump_json(), event="end")
            return
        await anyio.sleep(server.poll_seconds)


async def session_updates(server: ServerState, session_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    """The updates of ``session_id``'s instances after seq ``after``, in batches, until none is unsettled."""
    queue = instance_queue_for(server.store)
    last = after
    wait = FIRST_POLL_SECONDS
    while True:
        more, updates = await in_thread(queue.load_updates, session_id, last, UPDATES_PER_MESSAGE)
        if updates:
            last = updates[-1].seq
            # ``data`` is stored as JSON text already: put it in as it is rather than decode and encode it.
            views = ",".join(
                f'{{"seq":{u.seq},"instance_id":{json.dumps(u.instance_id)},"kind":{json.dumps(u.kind)},"data":{u.data}}}'
                for u in updates
            )
            yield ServerSentEvent(raw_data=f"[{views}]", event="updates", id=str(last))
            wait = FIRST_POLL_SECONDS
            if len(updates) >= UPDATES_PER_MESSAGE:
                continue
        if not more:
            end = SessionEnd(session_id=session_id, last_seq=last)
            yield ServerSentEvent(raw_data=end.model_dump_json(), event="end")
            return
        await anyio.sleep(wait)
        wait = min(wait * 2, server.poll_seconds)
