"""How a worker process claims and holds work: the ``taskloom worker`` flags.

Apart from :mod:`taskloom.settings` (which still offers ``WorkerSettings``) because every run reads the
settings and no run needs these: a dataclass costs its module's import noticeably.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker process claims and holds work (``taskloom worker`` flags); shared by the execution
    and the instance worker, so one command configures both."""

    concurrency: int = 4
    lease_seconds: float = 10.0
    poll_seconds: float = 0.5
    grace_seconds: float = 30.0

    def __post_init__(self) -> None:
        for name in ("concurrency", "lease_seconds", "poll_seconds", "grace_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"worker setting {name!r} must be a positive number, got {value!r}")
        if not isinstance(self.concurrency, int):
            raise ValueError(f"worker setting 'concurrency' must be an integer, got {self.concurrency!r}")
