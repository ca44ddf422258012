"""``taskloom schedules list|pause|resume|remove`` (with ``--json``) on both stores."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_schedules import T0, report

from taskloom.cli.main import EXIT_OK, EXIT_USAGE, main
from taskloom.schedule_ticks import tick_execution_id
from taskloom.schedules import tick
from taskloom.store import Store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == EXIT_OK, err
    return json.loads(out)


def test_list_shows_each_schedule_with_its_next_tick(default: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "schedules", "list")[1] == "no schedules\n"
    report.schedule("0 9 * * *", input={"n": 1}, timezone="Europe/Oslo", catchup="all")
    (listed,) = as_json(capsys, "schedules", "list")
    assert {k: v for k, v in listed.items() if k not in ("last_tick", "next_tick")} == {
        "name": "report",
        "workflow": "report",
        "cron": "0 9 * * *",
        "timezone": "Europe/Oslo",
        "catchup": "all",
        "paused": False,
        "input": {"n": 1},
    }
    assert listed["next_tick"].endswith(("T09:00:00+01:00", "T09:00:00+02:00"))
    code, out, _ = run(capsys, "schedules", "list")
    assert code == EXIT_OK and out.startswith("report  report  '0 9 * * *' Europe/Oslo  catchup=all  next 20")


def test_pause_and_resume_through_the_cli_stop_and_restart_ticks(
    default: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    report.schedule("*/5 * * * *")
    default.advance_schedule("report", default.get_schedule("report").last_tick, T0)  # type: ignore[union-attr]

    paused = as_json(capsys, "schedules", "pause", "report")
    assert paused["paused"] is True and paused["next_tick"] is None
    assert default.get_schedule("report").paused  # type: ignore[union-attr]
    assert tick(default, None, T0 + 301).started == []
    assert run(capsys, "schedules", "list")[1].rstrip().endswith("paused")

    code, out, _ = run(capsys, "schedules", "resume", "report")
    assert (code, out) == (EXIT_OK, "schedule 'report' resumed\n")
    record = default.get_schedule("report")
    assert record is not None and not record.paused
    # Resumed from now: the next tick (not the one that fell while paused) starts.
    after_resume = record.last_tick
    due = tick(default, None, after_resume + 301).started
    assert len(due) == 1 and due[0] != tick_execution_id("report", T0 + 300)


def test_remove_deletes_the_schedule_and_keeps_its_executions(
    default: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    report.schedule("*/5 * * * *")
    default.advance_schedule("report", default.get_schedule("report").last_tick, T0)  # type: ignore[union-attr]
    (started,) = tick(default, None, T0 + 301).started

    assert as_json(capsys, "schedules", "remove", "report") == {"removed": "report"}
    assert default.get_schedule("report") is None
    assert default.get_execution(started) is not None
    assert tick(default, None, T0 + 601).started == []


@pytest.mark.parametrize("action", ["pause", "resume", "remove"])
def test_an_unknown_name_is_a_usage_error_naming_it(
    default: Store, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    report.schedule("*/5 * * * *")
    code, out, err = run(capsys, "schedules", action, "nope")
    assert code == EXIT_USAGE and out == ""
    assert "no schedule named 'nope' (schedules: report)" in err
    assert default.get_schedule("report").paused is False  # type: ignore[union-attr]
