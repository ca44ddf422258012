"""Retention: ``prune`` removes old finished executions and what only they used, never anything live.

Both stores. Executions are made by real workflow runs; "old" is made by moving their ``updated_at``
back, and parentage by setting ``parent_id``, with plain SQL on the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import stop, wait_for

from taskloom.retention import RetentionError, parse_age, prune
from taskloom.store import open_store
from taskloom.store.base import Store
from taskloom.store.statements import Statements

HERE = Path(__file__).parent
DAY = 86400.0


@pytest.fixture
def store(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("TASKLOOM_DATABASE_URL", store_url)
    monkeypatch.setenv("TASKLOOM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TASKLOOM_SERVER_URL", raising=False)
    opened = open_store(store_url)
    yield opened
    opened.close()


def age(store: Store, execution_id: str, days: float) -> None:
    Statements(store).run("UPDATE executions SET updated_at = ? WHERE id = ?", (time.time() - days * DAY, execution_id))


def make(store: Store, name: str, kind: str = "done", *, days: float = 40) -> str:
    """Run one execution of ``kind`` (done, broken, waiting, cancelled) and make it ``days`` old."""
    import retentionapp

    if kind == "done":
        retentionapp.done.run(5, execution_id=name)
    elif kind == "broken":
        assert retentionapp.broken.run(5, execution_id=name).status == "failed"
    else:
        retentionapp.waiting.run(5, execution_id=name)
        if kind == "cancelled":
            retentionapp.waiting.cancel(name)
    age(store, name, days)
    return name


def counts(store: Store, execution_id: str) -> tuple[int, int, int]:
    """(execution rows, events, messages) of one execution."""
    rows, events, messages = Statements(store).run_all(
        [
            ("SELECT COUNT(*) FROM executions WHERE id = ?", (execution_id,)),
            ("SELECT COUNT(*) FROM events WHERE execution_id = ?", (execution_id,)),
            ("SELECT COUNT(*) FROM messages WHERE execution_id = ?", (execution_id,)),
        ]
    )
    return int(rows[0][0]), int(events[0][0]), int(messages[0][0])


def add_message(store: Store, execution_id: str) -> None:
    Statements(store).run(
        "INSERT INTO messages (execution_id, topic, value, sent_at) VALUES (?, 'topic', NULL, ?)",
        (execution_id, time.time() - 40 * DAY),
    )


def test_old_finished_executions_go_with_their_events_messages_and_output_files(store: Store) -> None:
    import retentionapp

    for name, kind in (("old-done", "done"), ("old-failed", "broken"), ("old-cancelled", "cancelled")):
        make(store, name, kind)
    add_message(store, "old-done")
    files = list(Path(retentionapp.OUTPUTS).iterdir())
    assert any("old-done" in f.name for f in files), files
    before = counts(store, "old-done")
    assert before[1] > 0 and before[2] == 1

    report = prune(store, "30d", output_dirs=[retentionapp.OUTPUTS])

    for name in ("old-done", "old-failed", "old-cancelled"):
        assert counts(store, name) == (0, 0, 0), name
    assert report.executions == 3 and report.messages == 1 and report.events >= before[1]
    assert report.output_files >= 1
    assert not any("old-done" in f.name for f in Path(retentionapp.OUTPUTS).iterdir())


def test_nothing_live_and_nothing_recent_is_touched(store: Store) -> None:
    make(store, "recent", "done", days=1)
    make(store, "old-paused", "waiting")
    make(store, "old-done", "done")
    Statements(store).run("UPDATE executions SET status = 'queued' WHERE id = ?", ("recent",))
    make(store, "queued-old", "done")
    Statements(store).run("UPDATE executions SET status = 'queued' WHERE id = ?", ("queued-old",))
    make(store, "running-old", "done")
    Statements(store).run("UPDATE executions SET status = 'running' WHERE id = ?", ("running-old",))
    kept = {name: counts(store, name) for name in ("recent", "old-paused", "queued-old", "running-old")}

    report = prune(store, "30d")

    assert report.executions == 1
    assert counts(store, "old-done") == (0, 0, 0)
    assert {name: counts(store, name) for name in kept} == kept


def test_a_finished_execution_whose_parent_or_child_is_live_is_kept(store: Store) -> None:
    make(store, "live-parent", "waiting")
    make(store, "old-child", "done")
    make(store, "old-parent", "done")
    make(store, "live-child", "waiting")
    make(store, "old-family-parent", "done")
    make(store, "old-family-child", "done")
    sql = Statements(store)
    for child, parent in (
        ("old-child", "live-parent"),
        ("live-child", "old-parent"),
        ("old-family-child", "old-family-parent"),
    ):
        sql.run("UPDATE executions SET parent_id = ? WHERE id = ?", (parent, child))

    dry = prune(store, "30d", dry_run=True)
    assert (dry.executions, dry.kept_for_relatives) == (2, 2)
    assert counts(store, "old-family-child")[0] == 1  # a dry run removes nothing

    report = prune(store, "30d")

    assert report.executions == 2 and report.kept_for_relatives == 2
    assert counts(store, "old-child")[0] == 1 and counts(store, "old-parent")[0] == 1
    assert counts(store, "old-family-child")[0] == 0 and counts(store, "old-family-parent")[0] == 0


def test_status_narrows_what_goes_and_never_widens_it(store: Store) -> None:
    make(store, "old-done", "done")
    make(store, "old-failed", "broken")
    report = prune(store, "30d", statuses=["failed"])
    assert report.executions == 1
    assert counts(store, "old-failed")[0] == 0 and counts(store, "old-done")[0] == 1
    with pytest.raises(RetentionError, match="only finished executions"):
        prune(store, "30d", statuses=["running"])


def test_events_go_in_small_transactions(store: Store) -> None:
    make(store, "old-done", "done")
    rows = counts(store, "old-done")[1]
    events = len(store.load_events("old-done"))
    assert events > rows  # a step's start and outcome, written together, are one row
    dry = prune(store, "30d", dry_run=True)
    report = prune(store, "30d", chunk_rows=2)
    assert dry.events == report.events == events  # counted as the execution's events, not its rows
    assert report.transactions >= rows // 2 + 1  # never all in one transaction
    assert counts(store, "old-done") == (0, 0, 0)


def test_old_instance_sessions_go_unless_an_instance_is_live(store: Store) -> None:
    sql = Statements(store)
    old = time.time() - 40 * DAY
    for session, status in (("s-done", "completed"), ("s-live", "running")):
        sql.run(
            "INSERT INTO instance_sessions (id, name, last_seq, created_at) VALUES (?, ?, 1, ?)",
            (session, session, old),
        )
        sql.run(
            "INSERT INTO instances (id, session_id, task, target, max_parallel, arguments, status, created_at, "
            "finished_at) VALUES (?, ?, 't', 'm:t', 1, '{}', ?, ?, ?)",
            (f"{session}-i", session, status, old, old if status == "completed" else None),
        )
        sql.run(
            "INSERT INTO instance_updates (session_id, seq, instance_id, kind, data, ts) "
            "VALUES (?, 1, ?, 'progress', '{}', ?)",
            (session, f"{session}-i", old),
        )
    report = prune(store, "30d")
    assert (report.sessions, report.instances, report.instance_updates) == (1, 1, 1)
    (remaining,) = sql.run_all([("SELECT id FROM instance_sessions ORDER BY id", ())])
    assert remaining == [("s-live",)]


@pytest.mark.parametrize("text", ["30", "0d", "-1d", "30 days", "", "1y"])
def test_a_bad_age_is_named(text: str) -> None:
    with pytest.raises(RetentionError, match="--older-than"):
        parse_age(text)


def test_ages_read_as_expected() -> None:
    assert [parse_age(t) for t in ("45s", "90m", "12h", "30d", "2w", "1.5h")] == [
        45,
        5400,
        43200,
        30 * DAY,
        14 * DAY,
        5400,
    ]


# -- processes: the CLI and a worker ------------------------------------------------------------------
def env_for(store_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path / "home"),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        **extra,
    }
    env.pop("TASKLOOM_SERVER_URL", None)
    return env


@pytest.mark.integration
def test_the_cli_prunes_with_a_dry_run_first(store: Store, store_url: str, tmp_path: Path) -> None:
    make(store, "old-done", "done")
    env = env_for(store_url, tmp_path)
    run = [sys.executable, "-m", "taskloom", "prune", "--older-than", "30d"]
    dry = subprocess.run([*run, "--dry-run", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["executions"] == 1 and counts(store, "old-done")[0] == 1
    done = subprocess.run([*run, "retentionapp"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "removed 1 execution(s)" in done.stdout and "output file" in done.stdout
    assert counts(store, "old-done") == (0, 0, 0)
    bad = subprocess.run([*run[:-1], "a month"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--older-than 'a month'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.integration
def test_a_worker_prunes_by_itself_when_retention_is_set(store: Store, store_url: str, tmp_path: Path) -> None:
    make(store, "old-done", "done")
    make(store, "recent", "done", days=1)
    env = env_for(store_url, tmp_path, TASKLOOM_RETENTION="30d")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "retentionapp"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: counts(store, "old-done")[0] == 0, timeout=60, what="the worker to prune")
    finally:
        stop(worker)
    assert counts(store, "recent")[0] == 1
    assert "pruning finished executions older than 30d" in log.read_text()


@pytest.mark.integration
def test_a_worker_with_a_bad_retention_setting_says_so(store_url: str, tmp_path: Path) -> None:
    env = env_for(store_url, tmp_path, TASKLOOM_RETENTION="forever")
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "worker", "retentionapp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "TASKLOOM_RETENTION 'forever'" in done.stderr and "Traceback" not in done.stderr
