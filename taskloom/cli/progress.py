"""Live view of a running execution, built from the store's events.

On a terminal, rich draws one progress bar per running step, fitted to the terminal's width (percentage,
elapsed time, status text), and prints log lines and finished steps above the bars. Elsewhere (pipes,
CI) it prints one plain line per change instead, and rich is not even imported.

Events that were already in the log when the command began (``history_seq``) are the past: a re-run or a
resume replays those steps from the store without running them, so they are shown as replayed, once,
never as if they started again.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from taskloom.events import Event, EventType

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

BAR_WIDTH = 24
#: built-in steps that take no time: not worth a bar
_INSTANT = frozenset({"now", "uuid4", "choice", "randint", "randrange"})
_MARKS = {"running": " ", "completed": "✓", "failed": "✗"}


@dataclass
class StepView:
    step_id: str
    name: str
    started: float = field(default_factory=time.time)
    progress: float | None = None
    status: str = ""
    state: str = "running"
    ended: float | None = None

    @property
    def label(self) -> str:
        return f"{self.name} (step {self.step_id})"

    def line(self) -> str:
        elapsed = max(0.0, (self.ended or time.time()) - self.started)
        if self.progress is None:
            bar = "." * BAR_WIDTH if self.state == "running" else "#" * BAR_WIDTH
            percent = "    "
        else:
            filled = round(BAR_WIDTH * self.progress / 100)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            percent = f"{self.progress:3.0f}%"
        mark = _MARKS.get(self.state, " ")
        return f"{mark} [{bar}] {percent} {self.label} {elapsed:5.1f}s  {self.status}".rstrip()


class _Bars:
    """The terminal part: rich's progress bars for the running steps, printed lines above them."""

    def __init__(self, out: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
        from rich.table import Column

        self.console = Console(file=out, force_terminal=True, highlight=False, markup=False, emoji=False)
        self.progress: Progress = Progress(
            TextColumn("{task.description}", markup=False, table_column=Column(no_wrap=True)),
            # the bar and the status share what the terminal leaves, 2:1; the status is cut, never wrapped
            BarColumn(bar_width=None, table_column=Column(ratio=2, min_width=10)),
            TaskProgressColumn(),
            TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
            TextColumn("{task.fields[status]}", markup=False, table_column=Column(ratio=1, no_wrap=True)),
            console=self.console,
            transient=True,  # finished bars leave as a printed line, not as a frozen bar
            expand=True,
        )
        self.tasks: dict[str, TaskID] = {}
        self.progress.start()

    def add(self, view: StepView) -> None:
        self.tasks[view.step_id] = self.progress.add_task(view.label, total=None, status="")

    def update(self, view: StepView) -> None:
        task = self.tasks.get(view.step_id)
        if task is not None:
            total = None if view.progress is None else 100.0
            self.progress.update(task, total=total, completed=view.progress or 0.0, status=view.status)

    def remove(self, view: StepView) -> None:
        task = self.tasks.pop(view.step_id, None)
        if task is not None:
            self.progress.remove_task(task)

    def say(self, text: str) -> None:
        self.progress.console.print(text, soft_wrap=True)

    def close(self) -> None:
        self.progress.stop()


class EventPrinter:
    """Turns events into output; ``feed`` is called with each new batch, ``close`` at the end.

    ``history_seq``: the last event that was in the log before this command began; the steps those
    events completed are replayed, not run, and are shown as such.
    """

    def __init__(
        self, out: IO[str] | None = None, *, as_json: bool = False, live: bool | None = None, history_seq: int = 0
    ) -> None:
        self.out = out or sys.stdout
        self.as_json = as_json
        self.live = self.out.isatty() if live is None else live
        self.history_seq = history_seq
        self.steps: dict[str, StepView] = {}
        self._bars: _Bars | None = None

    def feed(self, events: list[Event]) -> None:
        for event in events:
            if self.as_json:
                self.out.write(json.dumps(event.to_json()) + "\n")
            elif event.seq <= self.history_seq:
                self._apply_past(event)
            else:
                self._apply(event)
        self.out.flush()

    def _apply_past(self, event: Event) -> None:
        """A step that finished before this command began is replayed from the store: say so once."""
        if event.step_id is None or event.name in _INSTANT:
            return
        if event.type is EventType.STEP_COMPLETED:
            self._say(f"↺ {event.name} (step {event.step_id}) replayed: completed earlier, not run again")
        elif event.type is EventType.STEP_FAILED:
            self._say(f"↺ {event.name} (step {event.step_id}) replayed: failed earlier, not run again")

    def _apply(self, event: Event) -> None:
        sid = event.step_id
        if sid is None:
            return
        view = self.steps.get(sid)
        if event.type is EventType.STEP_STARTED and view is None and event.name not in _INSTANT:
            view = self.steps[sid] = StepView(sid, event.name or "?", event.timestamp.timestamp())
            if self.live:
                self._terminal().add(view)
            else:
                self._say(f"▶ {view.label} started")
        elif event.type is EventType.STEP_PROGRESS and view is not None:
            if "progress" in event.data:
                view.progress = float(event.data["progress"])
            if event.data.get("status"):
                view.status = str(event.data["status"])
            if self.live:
                self._terminal().update(view)
            else:
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
            if self._bars is not None:
                self._bars.remove(view)
            self._say(view.line())
            del self.steps[sid]

    def _terminal(self) -> _Bars:
        if self._bars is None:
            self._bars = _Bars(self.out)
        return self._bars

    def _say(self, text: str) -> None:
        if self.live:
            self._terminal().say(text)
        else:
            self.out.write(text + "\n")

    def close(self) -> None:
        if self._bars is not None:
            self._bars.close()
            self._bars = None
        self.out.flush()


def render_value(value: Any) -> str:
    from taskloom import serde

    view = serde.json_view(value)
    return view if isinstance(view, str) else json.dumps(view, indent=2, ensure_ascii=False)
