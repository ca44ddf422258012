"""Settings from the environment and worker settings: a bad value is an error naming it, never accepted."""

from __future__ import annotations

import math

import pytest

from taskloom.errors import TaskloomError
from taskloom.settings import Settings, WorkerSettings


@pytest.mark.parametrize("name", ["concurrency", "lease_seconds", "poll_seconds", "grace_seconds"])
@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, -math.inf, True, "1"])
def test_a_worker_setting_must_be_a_finite_positive_number(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"worker setting '{name}'"):
        WorkerSettings(**{name: value})  # type: ignore[arg-type]


def test_worker_settings_accept_positive_numbers() -> None:
    assert WorkerSettings(concurrency=2, lease_seconds=0.5, poll_seconds=1, grace_seconds=3.5).lease_seconds == 0.5


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("TASKLOOM_LEASE_SECONDS", "lease_seconds"),
        ("TASKLOOM_STORE_RETRY_SECONDS", "store_retry_seconds"),
        ("TASKLOOM_SQLITE_BUSY_TIMEOUT", "sqlite_busy_timeout"),
    ],
)
def test_durations_come_from_the_environment_and_bad_ones_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str
) -> None:
    monkeypatch.setenv(variable, "2.5")
    assert getattr(Settings.from_env(), field) == 2.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(variable, bad)
        with pytest.raises(TaskloomError, match=variable):
            Settings.from_env()


def test_a_lease_of_zero_is_refused_but_no_retry_budget_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_STORE_RETRY_SECONDS", "0")
    assert Settings.from_env().store_retry_seconds == 0
    monkeypatch.setenv("TASKLOOM_LEASE_SECONDS", "0")
    with pytest.raises(TaskloomError, match="TASKLOOM_LEASE_SECONDS"):
        Settings.from_env()
