"""Tasks no test worker imports: their instances stay queued on the server."""

from __future__ import annotations

from taskloom import task


@task
def unclaimed(value: int) -> int:
    return value
