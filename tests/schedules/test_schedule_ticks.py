"""The clock arithmetic of schedules, with the clock moved instead of slept (issue 10)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from taskloom.schedule_ticks import (
    MAX_TICKS_PER_PASS,
    ON_TIME_SECONDS,
    Cron,
    ScheduleError,
    due_ticks,
    tick_execution_id,
)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


EVERY_5 = Cron("*/5 * * * *", "UTC")


def test_the_next_tick_is_strictly_after_the_moment() -> None:
    assert EVERY_5.after(at("2026-12-01T10:03:00")) == at("2026-12-01T10:05:00")
    assert EVERY_5.after(at("2026-12-01T10:05:00")) == at("2026-12-01T10:10:00")
    assert EVERY_5.after(at("2026-12-01T10:04:59.5")) == at("2026-12-01T10:05:00")


def test_six_fields_tick_every_second() -> None:
    every_second = Cron("* * * * * *", "UTC")
    assert every_second.after(at("2026-12-01T10:00:00")) == at("2026-12-01T10:00:01")


def test_a_time_zone_follows_daylight_saving_time() -> None:
    nine_in_oslo = Cron("0 9 * * *", "Europe/Oslo")
    assert nine_in_oslo.after(at("2026-07-01T00:00:00")) == at("2026-07-01T07:00:00")  # CEST, UTC+2
    assert nine_in_oslo.after(at("2026-12-01T00:00:00")) == at("2026-12-01T08:00:00")  # CET, UTC+1


@pytest.mark.parametrize(
    ("expression", "zone", "named"),
    [
        ("every five minutes", "UTC", "every five minutes"),
        ("61 * * * *", "UTC", "61 * * * *"),
        ("* * * * *", "Mars/Olympus", "Mars/Olympus"),
    ],
)
def test_a_bad_expression_or_zone_is_a_clear_error(expression: str, zone: str, named: str) -> None:
    with pytest.raises(ScheduleError, match=named.replace("*", r"\*")):
        Cron(expression, zone)


def test_nothing_is_due_before_the_first_tick() -> None:
    assert due_ticks(EVERY_5, at("2026-12-01T10:00:00"), at("2026-12-01T10:04:59"), "latest") == (
        [],
        at("2026-12-01T10:00:00"),
    )


def test_a_tick_that_just_fell_is_due_under_every_policy() -> None:
    after, now = at("2026-12-01T10:00:00"), at("2026-12-01T10:05:01")
    for policy in ("latest", "all", "none"):
        assert due_ticks(EVERY_5, after, now, policy) == ([at("2026-12-01T10:05:00")], at("2026-12-01T10:05:00"))


def test_after_an_outage_all_starts_every_missed_tick_latest_one_none_skips_them() -> None:
    after, now = at("2026-12-01T10:00:00"), at("2026-12-01T11:02:00")  # nothing ran for an hour
    fallen = [at("2026-12-01T10:05:00") + 300 * n for n in range(12)]
    assert due_ticks(EVERY_5, after, now, "all") == (fallen, fallen[-1])
    assert due_ticks(EVERY_5, after, now, "latest") == ([fallen[-1]], fallen[-1])
    assert now - fallen[-1] > ON_TIME_SECONDS
    assert due_ticks(EVERY_5, after, now, "none") == ([], fallen[-1])  # skipped, and not started later


def test_catching_up_all_goes_in_passes_of_bounded_size() -> None:
    every_second = Cron("* * * * * *", "UTC")
    after = at("2026-12-01T00:00:00")
    now = after + MAX_TICKS_PER_PASS + 500
    first, resume_from = due_ticks(every_second, after, now, "all")
    assert len(first) == MAX_TICKS_PER_PASS and resume_from == first[-1] == after + MAX_TICKS_PER_PASS
    second, done = due_ticks(every_second, resume_from, now, "all")
    assert second == [after + MAX_TICKS_PER_PASS + n for n in range(1, 501)] and done == now


def test_an_unknown_catchup_policy_is_refused_by_name() -> None:
    with pytest.raises(ScheduleError, match="catchup must be one of latest, all, none, got 'some'"):
        due_ticks(EVERY_5, 0.0, 1.0, "some")


def test_each_tick_has_one_execution_id_that_names_it() -> None:
    tick = at("2026-12-01T09:00:00")
    assert tick_execution_id("nightly", tick) == "nightly@20261201T090000Z"
    assert tick_execution_id("nightly", tick) == tick_execution_id("nightly", tick)
    assert tick_execution_id("nightly", tick + 300) != tick_execution_id("nightly", tick)
    assert tick_execution_id("fast", tick + 0.25) == "fast@20261201T090000.250000Z"


def test_the_newest_tick_after_a_long_outage_is_found_without_walking_every_tick() -> None:
    every_second = Cron("* * * * * *", "UTC")
    after = at("2026-11-01T00:00:00")
    now = at("2026-12-01T00:00:00.5")  # a month: 2.6 million ticks, minutes to walk one by one
    started = time.monotonic()
    assert due_ticks(every_second, after, now, "latest") == ([at("2026-12-01T00:00:00")], at("2026-12-01T00:00:00"))
    assert due_ticks(every_second, after, now, "none") == ([at("2026-12-01T00:00:00")], at("2026-12-01T00:00:00"))
    assert time.monotonic() - started < 5.0


def test_the_last_tick_at_or_before_a_moment() -> None:
    assert EVERY_5.before(at("2026-12-01T10:05:00")) == at("2026-12-01T10:05:00")
    assert EVERY_5.before(at("2026-12-01T10:04:59.9")) == at("2026-12-01T10:00:00")
    assert EVERY_5.before(at("2026-12-01T10:05:00.5")) == at("2026-12-01T10:05:00")
    nine_in_oslo = Cron("0 9 * * *", "Europe/Oslo")
    assert nine_in_oslo.before(at("2026-07-02T00:00:00")) == at("2026-07-01T07:00:00")
