"""When a schedule's ticks fall, and which of them are due: the clock arithmetic of schedules.

Pure functions over an injected ``now`` (seconds since the epoch), so tests move the clock instead of
sleeping. Cron expressions are parsed by ``cronsim`` (five fields, or six with seconds first), in the
schedule's IANA time zone, so "every day at 09:00 Europe/Oslo" follows daylight saving time.

Each tick's execution id is derived from the schedule's name and the tick's time: two processes that
both find a tick due create the same id, and the store's unique key lets only one of them create it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from taskloom.errors import WorkflowError

#: what to do with ticks that fell while nothing ran
CATCHUP_POLICIES = ("latest", "all", "none")
#: at most this many missed ticks are started in one pass with ``catchup="all"`` (the rest next pass)
MAX_TICKS_PER_PASS = 1000
#: with ``catchup="none"``, a tick still counts as on time this long after it fell (a worker's poll)
ON_TIME_SECONDS = 60.0


class ScheduleError(WorkflowError):
    """A schedule that cannot be: a bad cron expression, time zone or catch-up policy."""


@dataclass(frozen=True)
class Cron:
    """A validated cron expression in a time zone."""

    expression: str
    timezone: str

    def __post_init__(self) -> None:
        zone(self.timezone)
        try:
            self.after(0.0)
        except ScheduleError:
            raise
        except Exception as error:
            raise ScheduleError(f"schedule {self.expression!r}: not a cron expression ({error})") from None

    def after(self, moment: float) -> float | None:
        """The first tick strictly after ``moment``, or None if the expression never fires again."""
        from cronsim import CronSim, CronSimError

        start = datetime.fromtimestamp(moment, zone(self.timezone)).replace(microsecond=0)
        try:
            ticks = CronSim(self.expression, start)
            for tick in ticks:
                value = tick.timestamp()
                if value > moment:
                    return value
        except CronSimError as error:
            raise ScheduleError(f"schedule {self.expression!r}: not a cron expression ({error})") from None
        return None

    def before(self, moment: float) -> float | None:
        """The last tick at or before ``moment``, or None.

        Searched backwards, so that the newest tick after a long outage costs one step, not one per tick
        missed (a per-second schedule down for a week has 604,800 of them).
        """
        from cronsim import CronSim, CronSimError

        start = datetime.fromtimestamp(math.floor(moment) + 1, zone(self.timezone))
        try:
            for tick in CronSim(self.expression, start, reverse=True):
                value = tick.timestamp()
                if value <= moment:
                    return value
        except CronSimError as error:
            raise ScheduleError(f"schedule {self.expression!r}: not a cron expression ({error})") from None
        return None


def check_catchup(catchup: str) -> str:
    if catchup not in CATCHUP_POLICIES:
        raise ScheduleError(f"catchup must be one of {', '.join(CATCHUP_POLICIES)}, got {catchup!r}")
    return catchup


def due_ticks(cron: Cron, after: float, now: float, catchup: str) -> tuple[list[float], float]:
    """The ticks in ``(after, now]`` to start now, per ``catchup``, and the new ``after`` to store.

    ``"all"`` starts every tick that fell (at most :data:`MAX_TICKS_PER_PASS` per pass, oldest first);
    ``"latest"`` only the most recent one; ``"none"`` only a tick that fell within
    :data:`ON_TIME_SECONDS`, so ticks missed while nothing ran are skipped.
    """
    check_catchup(catchup)
    if catchup != "all":
        newest = cron.before(now)
        if newest is None or newest <= after:
            return [], after
        if catchup == "latest" or now - newest <= ON_TIME_SECONDS:
            return [newest], newest
        return [], newest
    fallen: list[float] = []
    moment = after
    while True:
        tick = cron.after(moment)
        if tick is None or tick > now:
            break
        fallen.append(tick)
        moment = tick
        if len(fallen) == MAX_TICKS_PER_PASS:
            return fallen, tick  # the rest on the next pass
    if not fallen:
        return [], after
    return fallen, fallen[-1]


def tick_execution_id(schedule: str, tick: float) -> str:
    """``<schedule>@20261201T090000Z``: the one execution of this schedule's tick."""
    stamp = datetime.fromtimestamp(tick, UTC).strftime("%Y%m%dT%H%M%S")
    fraction = round(tick % 1 * 1_000_000)
    return f"{schedule}@{stamp}{f'.{fraction:06d}' if fraction else ''}Z"


def zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    # zoneinfo (and sysconfig under it) loads on the first named zone, not with ``import taskloom``
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"timezone {name!r} is not an IANA time zone (e.g. 'UTC', 'Europe/Oslo')") from None
