"""`taskloom worker` and `server` say at start which store they use (issue 9): `describe_store`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskloom.store import describe_store, open_store


def test_an_existing_sqlite_file_is_named_by_its_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    open_store("sqlite:///flows.db").close()
    assert describe_store("sqlite:///flows.db") == f"store sqlite:///{tmp_path / 'flows.db'}"


def test_a_sqlite_file_that_does_not_exist_yet_is_called_new_and_empty(tmp_path: Path) -> None:
    line = describe_store(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert line.startswith(f"store sqlite:///{tmp_path / 'elsewhere.db'} (a new, empty file")
    assert "TASKLOOM_DATABASE_URL" in line and "TASKLOOM_HOME" in line


def test_a_postgresql_url_is_shown_without_its_password() -> None:
    line = describe_store("postgresql://app:s3cret-pw@db.internal:5433/taskloom?sslmode=require")
    assert line == "store postgresql://app:***@db.internal:5433/taskloom?sslmode=require"
    assert describe_store("postgres://app@db/taskloom") == "store postgres://app@db/taskloom"


def test_the_worker_command_prints_its_store_before_anything_else(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env["TASKLOOM_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "worker", "no_such_module_here"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    first = done.stderr.splitlines()[0]
    assert f"store sqlite:///{tmp_path / 'home' / 'taskloom.db'} (a new, empty file" in first, done.stderr


def test_the_server_command_prints_its_store_at_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env["TASKLOOM_HOME"] = str(tmp_path / "home")
    server = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "server", "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(4)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    expected = f"taskloom server: store sqlite:///{tmp_path / 'home' / 'taskloom.db'} (a new, empty file"
    assert any(line.startswith(expected) for line in lines), lines
