"""The CLI's live view: bars fitted to the terminal, replayed steps shown as replayed (issue 9)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from taskloom.cli.progress import EventPrinter
from taskloom.events import Event, EventType

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def event(seq: int, type_: EventType, step_id: str | None, name: str, **data: Any) -> Event:
    return Event(seq, "e1", type_, NOW, step_id, name, None, data)


def rendered_bars(printer: EventPrinter, width: int) -> list[str]:
    """The running steps' bars as a terminal of ``width`` columns shows them."""
    assert printer._bars is not None
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(printer._bars.progress.get_renderable())
    return [line for line in console.export_text().splitlines() if line.strip()]


@pytest.mark.parametrize("width", [50, 80, 140])
def test_bars_fit_the_terminal_and_use_its_width(width: int) -> None:
    printer = EventPrinter(io.StringIO(), live=True)
    printer.feed(
        [
            event(1, EventType.STEP_STARTED, "1", "resize_images"),
            event(2, EventType.STEP_PROGRESS, "1", "resize_images", progress=100.0, status="image 10/10"),
        ]
    )
    try:
        lines = rendered_bars(printer, width)
        assert len(lines) == 1
        assert all(len(line) <= width for line in lines), lines
        assert "resize_images (step 1)" in lines[0] and "100%" in lines[0], lines
        bar = max(len(run) for run in lines[0].replace("╸", "━").split(" ") if set(run) <= {"━"})
        assert bar >= width // 6, lines  # the bar takes the room the terminal leaves, not a fixed width
    finally:
        printer.close()


def test_a_wider_terminal_gets_a_longer_bar() -> None:
    printer = EventPrinter(io.StringIO(), live=True)
    printer.feed(
        [event(1, EventType.STEP_STARTED, "1", "fit"), event(2, EventType.STEP_PROGRESS, "1", "fit", progress=40.0)]
    )
    try:
        narrow, wide = rendered_bars(printer, 60)[0], rendered_bars(printer, 160)[0]
        assert narrow.count("━") + narrow.count("╸") < wide.count("━") + wide.count("╸")
    finally:
        printer.close()


def test_a_finished_step_leaves_a_line_and_its_bar_goes() -> None:
    out = io.StringIO()
    printer = EventPrinter(out, live=True)
    printer.feed([event(1, EventType.STEP_STARTED, "1", "load"), event(2, EventType.STEP_COMPLETED, "1", "load")])
    assert printer._bars is not None and not printer._bars.tasks
    printer.close()
    assert "✓" in out.getvalue() and "load (step 1)" in out.getvalue()


def test_events_from_before_the_command_are_shown_as_replayed_once() -> None:
    out = io.StringIO()
    printer = EventPrinter(out, live=False, history_seq=5)
    printer.feed(
        [
            event(1, EventType.EXECUTION_STARTED, None, "flow"),
            event(2, EventType.STEP_STARTED, "1", "fetch"),
            event(3, EventType.STEP_PROGRESS, "1", "fetch", progress=100.0, status="all fetched"),
            event(4, EventType.STEP_LOG, "1", "fetch", level="info", message="fetched 3"),
            event(5, EventType.STEP_COMPLETED, "1", "fetch"),
            event(6, EventType.STEP_STARTED, "2", "store"),
            event(7, EventType.STEP_COMPLETED, "2", "store"),
        ]
    )
    printer.close()
    text = out.getvalue()
    assert text.count("fetch (step 1)") == 1
    assert "↺ fetch (step 1) replayed: completed earlier, not run again" in text
    assert "all fetched" not in text and "fetched 3" not in text
    assert "▶ store (step 2) started" in text and "✓" in text


def test_a_step_that_failed_before_the_command_is_shown_as_replayed_failure() -> None:
    out = io.StringIO()
    printer = EventPrinter(out, live=False, history_seq=2)
    printer.feed([event(1, EventType.STEP_STARTED, "1", "charge"), event(2, EventType.STEP_FAILED, "1", "charge")])
    assert out.getvalue() == "↺ charge (step 1) replayed: failed earlier, not run again\n"


def test_plain_output_never_imports_rich_machinery() -> None:
    printer = EventPrinter(io.StringIO(), live=False)
    printer.feed([event(1, EventType.STEP_STARTED, "1", "x"), event(2, EventType.STEP_PROGRESS, "1", "x", progress=10)])
    assert printer._bars is None
