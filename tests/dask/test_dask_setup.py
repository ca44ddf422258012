"""Choosing the Dask executor: the variable's errors, the lazy import, and the example as written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from taskloom.errors import TaskloomError
from taskloom.executors import current_executor
from taskloom.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", ["ray://head:10001", "dask://", "tcp://127.0.0.1:8786", "dask"])
def test_a_bad_executor_address_is_an_error_naming_the_variable(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_EXECUTOR", value)
    with pytest.raises(TaskloomError, match=r"TASKLOOM_EXECUTOR=.*dask://HOST:PORT"):
        Settings.from_env()
    with pytest.raises(TaskloomError, match="TASKLOOM_EXECUTOR"):
        current_executor()


@pytest.mark.parametrize("value", ["", "local", " LOCAL "])
def test_local_or_no_executor_runs_attempts_in_this_process(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_EXECUTOR", value)
    assert Settings.from_env().executor is None
    assert current_executor() is None


def test_an_unreachable_scheduler_is_an_error_naming_the_address_within_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taskloom.errors import BackendError
    from taskloom.executors import dask as dask_executor

    with socket.socket() as probe:  # a port on loopback that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(dask_executor, "CONNECT_SECONDS", 1.0)
    with pytest.raises(BackendError, match=rf"TASKLOOM_EXECUTOR='dask://127.0.0.1:{port}': cannot reach .* within 1 s"):
        dask_executor.connect_dask(f"dask://127.0.0.1:{port}")


def test_import_taskloom_does_not_import_dask() -> None:
    code = "import sys, taskloom; print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    env = {k: v for k, v in os.environ.items() if k != "TASKLOOM_EXECUTOR"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.integration
def test_the_example_runs_its_map_on_dask_workers_and_replays_from_the_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    example = ROOT / "examples" / "dask_map.py"
    runs = [
        subprocess.run(
            [sys.executable, str(example)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=50
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, again = (run.stdout.strip().splitlines()[-1] for run in runs)
    assert first.startswith("completed: 8 customers scored in Dask worker processes")
    driver = first.rsplit("driver ", 1)[1]
    assert driver not in first.split("driver")[0]
    # the second run replays the recorded execution: the same workers' pids, from the store
    assert again.split(", driver")[0] == first.split(", driver")[0]
