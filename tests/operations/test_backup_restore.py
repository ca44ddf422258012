"""``taskloom backup`` while a worker runs, the store lost, ``taskloom restore``, and the work finishes.

Both stores: SQLite through its online backup API, PostgreSQL through pg_dump/pg_restore of the test
server's own programs. Real processes: the CLI and a worker, one SIGKILLed mid-run.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import kill, stop, wait_for

from taskloom.backup import BackupError, _pg_target, backup, restore
from taskloom.presence import Presence
from taskloom.store import open_store
from taskloom.store.base import ExecutionStatus

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


@pytest.fixture
def env(store_url: str, store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    variables = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path / "home"),
        "TASKLOOM_LEASE_SECONDS": "2",  # the killed worker's execution is taken over soon after the restore
        "TASKLOOM_TEST_STEP_LOG": str(tmp_path / "steps.log"),
        "TASKLOOM_TEST_GATE": str(tmp_path / "gate"),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    variables.pop("TASKLOOM_SERVER_URL", None)
    if store_kind == "postgres":
        variables["TASKLOOM_PG_BINDIR"] = str(request.getfixturevalue("pg_server").bindir)
    return variables


def taskloom(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args], env=env, capture_output=True, text=True, timeout=120
    )


def step_runs(env: dict[str, str]) -> Counter[str]:
    log = Path(env["TASKLOOM_TEST_STEP_LOG"])
    return Counter(log.read_text().splitlines()) if log.exists() else Counter()


def lose_the_store(url: str) -> None:
    """The disaster: the SQLite file and its WAL deleted, or the PostgreSQL schema dropped and recreated."""
    if url.startswith("postgresql://"):
        import psycopg
        from psycopg import sql

        dsn, schema = _pg_target(url)
        assert schema is not None
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return
    path = Path(url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def worker_log(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "worker.log"


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "backupapp"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def test_a_backup_taken_mid_run_restores_and_every_execution_finishes_without_repeating_a_step(
    env: dict[str, str], store_url: str, tmp_path: Path, worker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three executions paused for input, one completed.
    for name in ("a", "b", "c", "done"):
        ran = taskloom(env, "run", "backupapp:approval", f'"{name}"', "--execution-id", name)
        assert "paused" in ran.stdout + ran.stderr, ran.stdout + ran.stderr
    resumed = taskloom(env, "resume", "done", '"early yes"')
    assert resumed.returncode == 0, resumed.stderr

    # One execution running in a worker, held mid-step at the gate.
    worker = start_worker(env, worker_log)
    try:
        for name, value in env.items():
            if name.startswith("TASKLOOM_"):
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("TASKLOOM_START", "queue")
        from backupapp import gated

        gated.start("g", execution_id="g")
        wait_for(lambda: step_runs(env)["waiting g"], timeout=90, what="the gated execution to reach its gate")

        # The backup, while the worker holds the execution.
        made = taskloom(env, "backup", str(tmp_path / "store.backup"), "--json")
        assert made.returncode == 0, made.stderr
        assert '"executions": 5' in made.stdout
    finally:
        kill(worker)  # the crash: the worker dies mid-step
    assert (tmp_path / "store.backup").stat().st_size > 0

    lose_the_store(store_url)
    gone = open_store(store_url)
    assert gone.get_execution("a") is None
    gone.close()

    restored = taskloom(env, "restore", str(tmp_path / "store.backup"))
    assert restored.returncode == 0, restored.stderr
    assert "restored 5 execution(s)" in restored.stdout

    store = open_store(store_url)
    try:
        statuses = {name: store.get_execution(name).status for name in ("a", "b", "c", "done", "g")}  # type: ignore[union-attr]
        assert statuses == {
            "a": ExecutionStatus.PAUSED,
            "b": ExecutionStatus.PAUSED,
            "c": ExecutionStatus.PAUSED,
            "done": ExecutionStatus.COMPLETED,
            "g": ExecutionStatus.RUNNING,
        }
        for name in ("a", "b", "c"):
            finished = taskloom(env, "resume", name, '"yes"')
            assert finished.returncode == 0, finished.stderr
        Path(env["TASKLOOM_TEST_GATE"]).touch()
        worker = start_worker(env, worker_log)
        try:

            def settled() -> bool:
                record = store.get_execution("g")
                return record is not None and record.status == ExecutionStatus.COMPLETED

            wait_for(settled, timeout=90, what="a new worker to take over and finish the restored execution")
        finally:
            stop(worker)
        assert all(store.get_execution(n).status == ExecutionStatus.COMPLETED for n in "abc")  # type: ignore[union-attr]
    finally:
        store.close()

    runs = step_runs(env)
    # Every step that completed before the backup ran once; the restored, unfinished ones ran once after it.
    assert runs == Counter(
        {
            "prepare a": 1,
            "prepare b": 1,
            "prepare c": 1,
            "prepare done": 1,
            "finish done": 1,
            "finish a": 1,
            "finish b": 1,
            "finish c": 1,
            "prepare g": 1,
            "waiting g": 2,  # the step the crash interrupted runs again, whole; the one before it does not
            "gate g": 1,
        }
    ), runs


def test_restore_refuses_while_a_worker_is_live_and_names_it(
    env: dict[str, str], store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKLOOM_PG_BINDIR", env.get("TASKLOOM_PG_BINDIR", ""))
    target = tmp_path / "copy.backup"
    store = open_store(store_url)
    try:
        presence = Presence(store, "worker-on-host-1", ["workflow:x"]).start()
        try:
            backup(store_url, target)
            with pytest.raises(BackupError, match="stop them before restoring"):
                restore(store_url, target)
            assert restore(store_url, target, force=True).executions == 0
        finally:
            presence.stop()
    finally:
        store.close()


def test_backup_names_a_bad_target_folder(store_url: str, tmp_path: Path) -> None:
    open_store(store_url).close()
    with pytest.raises(BackupError, match="does not exist"):
        backup(store_url, tmp_path / "no" / "such" / "folder" / "x.backup")
    with pytest.raises(BackupError, match="is a folder"):
        backup(store_url, tmp_path)


def test_restore_names_a_file_that_is_not_a_backup(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'taskloom.db'}"
    garbage = tmp_path / "garbage.backup"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BackupError, match="not a readable SQLite database"):
        restore(url, garbage)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    with pytest.raises(BackupError, match="not a taskloom store"):
        restore(url, other)
    with pytest.raises(BackupError, match="no backup file"):
        restore(url, tmp_path / "missing.backup")


def test_the_cli_reports_a_backup_error_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"}
    result = taskloom(env, "backup", str(tmp_path / "x.backup"))
    assert result.returncode != 0
    assert "no SQLite store at" in result.stderr
    assert "Traceback" not in result.stderr
