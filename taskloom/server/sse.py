"""Live progress as Server-Sent Events: an execution's events as they are appended, then ``end``.

Each event goes out as ``id: <seq>``, ``event: <type>``, ``data: <Event.to_json()>``, so a browser's
``EventSource`` reconnects with ``Last-Event-ID`` and continues where it stopped. The stream ends with
``event: end`` once the execution has finished or paused (its data: execution id, status, last seq).

The server polls ``store.load_events(after_seq)`` every ``ServerState.poll_seconds`` in the thread pool;
a store-side notification (PostgreSQL LISTEN/NOTIFY) can replace the sleep later without changing the
wire format. Reading the status *before* the events is what makes the end exact: a store writes the
final status and the final event in one transaction, so once the status says finished, the events read
after it include the last one.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.responses import StreamingResponse

from taskloom.server.http import ServerState, in_thread
from taskloom.store.base import ExecutionStatus

#: statuses after which no event comes without someone acting (resume)
_QUIET = ExecutionStatus.FINISHED | {ExecutionStatus.PAUSED}


def format_event(data: Any, *, event: str, id: int | None = None) -> str:
    """One SSE message; ``data`` as one line of ASCII JSON (so no newline can split it)."""
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, ensure_ascii=True, default=str, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def _poll(server: ServerState, execution_id: str, after: int) -> tuple[str | None, list[dict[str, Any]]]:
    record = server.store.get_execution(execution_id)
    events = server.store.load_events(execution_id, after)
    return (record.status if record else None), [event.to_json() for event in events]


async def _messages(server: ServerState, execution_id: str, after: int) -> AsyncIterator[str]:
    last = after
    quiet_since = time.monotonic()
    while True:
        status, events = await in_thread(_poll, server, execution_id, last)
        for view in events:
            last = view["seq"]
            yield format_event(view, event=view["type"], id=last)
        if events:
            quiet_since = time.monotonic()
        if status is None or status in _QUIET:
            yield format_event({"execution_id": execution_id, "status": status, "last_seq": last}, event="end")
            return
        if time.monotonic() - quiet_since >= server.keepalive_seconds:
            yield ": keepalive\n\n"  # a comment: keeps proxies from closing an idle stream
            quiet_since = time.monotonic()
        await anyio.sleep(server.poll_seconds)


def event_stream(server: ServerState, execution_id: str, after: int) -> StreamingResponse:
    """The streaming response; Starlette cancels the generator when the client disconnects."""
    return StreamingResponse(
        _messages(server, execution_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
