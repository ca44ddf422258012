"""Live view of a running execution, built from the store's events.

On a terminal it redraws one progress bar per running step (percentage, status text, elapsed time) and
prints log lines above them; elsewhere (pipes, CI) it prints one line per change instead.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from taskloom.events import Event, EventType

BAR_WIDTH = 24
#: built-in steps that take no time: not worth a bar
_INSTANT = frozenset({"now", "uuid4", "choice", "randint", "randrange"})


@dataclass
class StepView:
    step_id: str
    name: str
    started: float = field(default_factory=time.time)
    progress: float | None = None
    status: str = ""
    state: str = "running"
    ended: float | None = None

    def line(self) -> str:
        elapsed = max(0.0, (self.ended or time.time()) - self.started)
        if self.progress is None:
            bar = "." * BAR_WIDTH if self.state == "running" else "#" * BAR_WIDTH
            percent = "    "
        else:
            filled = round(BAR_WIDTH * self.progress / 100)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            percent = f"{self.progress:3.0f}%"
        mark = {"running": " ", "completed": "✓", "failed": "✗"}.get(self.state, " ")
        return f"{mark} [{bar}] {percent} {self.name} (step {self.step_id}) {elapsed:5.1f}s  {self.status}".rstrip()


class EventPrinter:
    """Turns events into output; ``feed`` is called with each new batch, ``close`` at the end."""

    def __init__(self, out: IO[str] | None = None, *, as_json: bool = False, live: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.as_json = as_json
        self.live = self.out.isatty() if live is None else live
        self.steps: dict[str, StepView] = {}
        self._drawn = 0

    def feed(self, events: list[Event]) -> None:
        for event in events:
            if self.as_json:
                self.out.write(json.dumps(event.to_json()) + "\n")
                continue
            self._apply(event)
        if not self.as_json:
            self._redraw()
        self.out.flush()

    def _apply(self, event: Event) -> None:
        sid = event.step_id
        if sid is None:
            return
        view = self.steps.get(sid)
        if event.type is EventType.STEP_STARTED and view is None and event.name not in _INSTANT:
            self.steps[sid] = StepView(sid, event.name or "?", event.timestamp.timestamp())
            if not self.live:
                self._say(f"▶ {event.name} (step {sid}) started")
        elif event.type is EventType.STEP_PROGRESS and view is not None:
            if "progress" in event.data:
                view.progress = float(event.data["progress"])
            if event.data.get("status"):
                view.status = str(event.data["status"])
            if not self.live:
                self._say(view.line())
        elif event.type is EventType.STEP_LOG:
            self._say(f"  [{event.data.get('level', 'info')}] {event.name}: {event.data.get('message', '')}")
        elif event.type is EventType.STEP_RETRYING:
            self._say(
                f"↻ {event.name} (step {sid}) attempt {event.data.get('attempt')} failed: {event.data.get('error')}"
            )
        elif event.type in (EventType.STEP_FALLBACK, EventType.STEP_ROLLBACK):
            self._say(f"↺ {event.name} (step {sid}) {event.type.value.split('_')[1]} after: {event.data.get('error')}")
        elif event.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED):
            if view is None:
                return
            view.state = "completed" if event.type is EventType.STEP_COMPLETED else "failed"
            view.ended = event.timestamp.timestamp()
            if view.state == "completed" and view.progress is not None:
                view.progress = max(view.progress, 100.0)
            self._say(view.line())
            del self.steps[sid]

    def _say(self, text: str) -> None:
        self._erase()
        self.out.write(text + "\n")

    def _erase(self) -> None:
        if self.live and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _redraw(self) -> None:
        if not self.live:
            return
        self._erase()
        running = [v for v in self.steps.values() if v.state == "running"]
        for view in running:
            self.out.write(view.line() + "\n")
        self._drawn = len(running)

    def close(self) -> None:
        if not self.as_json:
            self._erase()
        self.out.flush()


def render_value(value: Any) -> str:
    from taskloom import serde

    view = serde.json_view(value)
    return view if isinstance(view, str) else json.dumps(view, indent=2, ensure_ascii=False)
