"""Event types: the only vocabulary the store speaks about an execution.

An execution's history is an append-only list of events. A *step* is a recorded task call; its
``step_id`` is its position in the workflow's deterministic call order (``"3"``, ``"3.1"`` for a call
made inside step 3), never a hash of its arguments.
"""

from __future__ import annotations

import enum

from taskloom import serde
from taskloom.errors import StoreError
from taskloom.plain_values import FrozenValue, PlainValue
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt
    from typing import Any


class EventType(enum.StrEnum):
    EXECUTION_STARTED = "execution_started"
    EXECUTION_PAUSED = "execution_paused"
    EXECUTION_RESUMED = "execution_resumed"
    EXECUTION_COMPLETED = "execution_completed"
    EXECUTION_FAILED = "execution_failed"
    EXECUTION_CANCELLED = "execution_cancelled"
    STEP_STARTED = "step_started"
    STEP_RETRYING = "step_retrying"
    STEP_FALLBACK = "step_fallback"
    STEP_ROLLBACK = "step_rollback"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_PROGRESS = "step_progress"
    STEP_LOG = "step_log"
    #: ``patched(change_id)`` met live (taskloom.versioning): the name is the change id; no step position
    PATCHED = "patched"
    #: A Graph's shape (data: graph_id, graph, nodes, edges, start, ends), written with its first wave.
    #: Informational, as GRAPH_WAVE is: replay never reads them, so logs without them replay the same.
    GRAPH_STARTED = "graph_started"
    #: One wave of a Graph run (data: graph_id, nodes {node: step id or None}, skipped [node, ...]),
    #: written in the transaction of the wave's first step, so the dashboard knows which step is which node.
    GRAPH_WAVE = "graph_wave"


#: Events that settle a step: on replay, a step with one of these is never run again.
STEP_OUTCOMES = frozenset({EventType.STEP_COMPLETED, EventType.STEP_FAILED})
EXECUTION_OUTCOMES = frozenset(
    {EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED, EventType.EXECUTION_CANCELLED}
)


class NewEvent(PlainValue):
    """An event about to be appended; ``value`` is already encoded by :mod:`taskloom.serde`.

    Not frozen, though nothing changes one once made: a frozen class sets each field through
    ``object.__setattr__``, three times the cost of making one, and every step makes two. Not a dataclass
    either (see :mod:`taskloom.plain_values`).
    """

    _fields = ("type", "step_id", "name", "value", "data")
    __slots__ = _fields
    __hash__ = None  # type: ignore[assignment]  # it could change: unhashable, as the dataclass was

    def __init__(
        self,
        type: EventType,
        step_id: str | None = None,
        name: str | None = None,
        value: bytes | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.type = type
        self.step_id = step_id
        self.name = name
        self.value = value
        self.data: dict[str, Any] = {} if data is None else data


class Event(FrozenValue):
    """A stored event, as ``ctx.events`` shows it: typed, timestamped, in order. Read-only.

    Not a frozen dataclass, which compiled its methods at import, about 1 ms of every process's start
    (issue 12's one-step process): see :mod:`taskloom.plain_values`.
    """

    _fields = ("seq", "execution_id", "type", "timestamp", "step_id", "name", "raw_value", "data")
    __slots__ = _fields

    seq: int
    execution_id: str
    type: EventType
    timestamp: dt.datetime
    step_id: str | None
    name: str | None
    raw_value: bytes | None
    data: dict[str, Any]

    def __init__(
        self,
        seq: int,
        execution_id: str,
        type: EventType,
        timestamp: dt.datetime,
        step_id: str | None,
        name: str | None,
        raw_value: bytes | None,
        data: dict[str, Any],
    ) -> None:
        setter = object.__setattr__
        setter(self, "seq", seq)
        setter(self, "execution_id", execution_id)
        setter(self, "type", type)
        setter(self, "timestamp", timestamp)
        setter(self, "step_id", step_id)
        setter(self, "name", name)
        setter(self, "raw_value", raw_value)
        setter(self, "data", data)

    def _shown(self) -> tuple[str, ...]:
        return ("seq", "execution_id", "type", "timestamp", "step_id", "name", "data")  # not the raw bytes

    @classmethod
    def from_row(cls, execution_id: str, row: tuple[Any, ...]) -> Event:
        """An event from a store row ``(seq, type, ts, step_id, name, value, data_json)``.

        A row this taskloom cannot read (a type written by a newer taskloom, data that is not JSON, a
        garbled timestamp) raises :class:`~taskloom.errors.StoreError` naming the execution and the event,
        never a bare ValueError: the store is damaged or newer, and the message says what to do.
        """
        seq, type_, ts, step_id, name, value, data = row
        try:
            event_type = EventType(type_)
        except ValueError:
            raise StoreError(
                f"execution {execution_id}: event {seq} has type {type_!r}, which this taskloom does not know; "
                "it was written by a newer taskloom: upgrade taskloom to read it"
            ) from None
        try:
            decoded = _loads_data(data) if data else {}
            if not isinstance(decoded, dict):
                raise ValueError(f"a JSON {type(decoded).__name__}, not an object")
            timestamp = _utc_datetime(ts)
            return cls(
                int(seq),
                execution_id,
                event_type,
                timestamp,
                step_id,
                name,
                None if value is None else bytes(value),
                decoded,
            )
        except (ValueError, TypeError, OverflowError, OSError) as error:
            raise StoreError(
                f"execution {execution_id}: event {seq} ({type_}) is damaged ({error}); restore the store from a backup"
            ) from None

    @property
    def value(self) -> Any:
        """The decoded value (a step's result or error, a pause's resume input, ...)."""
        return serde.loads(self.raw_value)

    def to_json(self) -> dict[str, Any]:
        view: dict[str, Any] = {
            "seq": self.seq,
            "type": str(self.type),
            "timestamp": self.timestamp.isoformat(),
            "step_id": self.step_id,
            "name": self.name,
            "data": self.data,
        }
        if self.raw_value is not None:
            try:
                view["value"] = serde.json_view(self.value)
            except Exception as error:  # a class that no longer exists in this process
                view["value"] = f"<undecodable: {error}>"
        return view


def _utc_datetime(ts: float) -> dt.datetime:
    """``datetime.fromtimestamp(ts, UTC)``. datetime is imported by the first event read, not with this
    module: a new execution's run reads none. The first call puts the direct function in its place."""
    global _utc_datetime
    import datetime

    utc, fromtimestamp = datetime.UTC, datetime.datetime.fromtimestamp

    def _utc_datetime(ts: float) -> dt.datetime:
        return fromtimestamp(ts, utc)

    return _utc_datetime(ts)


def _loads_data(data: str | bytes) -> Any:
    """An event's JSON data, decoded. json is imported here, on the first event that has data, not at
    the top: a one-step run's events have none, and ``import taskloom`` stays without it."""
    import json

    return json.loads(data)
