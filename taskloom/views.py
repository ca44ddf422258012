"""The JSON shape of an execution, one for every place that shows it.

`taskloom status --json` on the local store, the same command through a server, and the HTTP API give
the same object: the same fields, times as ISO 8601 with their UTC offset, stored values as their JSON
view. A script written against one works against the others.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from taskloom import serde
from taskloom.store.base import ExecutionRecord
from taskloom.versioning import shown


def timestamp(seconds: float) -> str:
    """Seconds since the epoch as ISO 8601 in UTC, with its offset: ``2026-12-01T15:34:32.134603+00:00``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def value_view(blob: bytes | None) -> Any:
    """The JSON view of a stored value; one this process cannot decode is described, not raised."""
    try:
        return serde.json_view(serde.loads(blob))
    except Exception as error:  # a class that no longer exists here, or a value too deep to render
        return f"<undecodable: {type(error).__name__}: {error}>"


def execution_view(record: ExecutionRecord, *, values: Collection[str] = ("input", "output")) -> dict[str, Any]:
    """An execution as JSON; ``values`` says which stored values to include (a list leaves out inputs)."""
    view: dict[str, Any] = {
        "execution_id": record.id,
        "workflow": record.workflow,
        "target": record.target,
        "status": record.status,
        "parent_id": record.parent_id,
        "version": shown(record.version),
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
    }
    if "input" in values:
        view["input"] = value_view(record.input)
    if "output" in values:
        view["output"] = value_view(record.output)
    return view
