"""SQLite store faults caused for real: another process holding the write lock, and a full disk.

A store error is never the task's error: the run stops with StoreUnavailableError / StoreError naming the
file, the workflow's own ``except Exception`` is not entered, no verdict is written, and once the fault
is gone running the execution again finishes it without re-running a completed step.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultapp.flows import bulky, guarded
from faultkit import WAIT, Scene, build_scene, end_scene
from processes import kill, wait_for

from taskloom.events import EXECUTION_OUTCOMES

pytestmark = pytest.mark.integration

BUSY_TIMEOUT = 0.2
RETRY_SECONDS = 1.0
SMALL_BUDGET = {"TASKLOOM_SQLITE_BUSY_TIMEOUT": str(BUSY_TIMEOUT), "TASKLOOM_STORE_RETRY_SECONDS": str(RETRY_SECONDS)}


@contextmanager
def write_lock_held(scene: Scene, database: Path) -> Iterator[None]:
    """Another process holds ``BEGIN IMMEDIATE`` on ``database`` for the length of the block."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "faultapp.lockholder", str(database)],
        env=scene.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked", "the lock holder could not take the lock"
        yield
        holder.stdin.close()
        assert holder.wait(timeout=WAIT) == 0
    finally:
        kill(holder)


def verdicts(scene: Scene, execution_id: str) -> list[str]:
    return [event.type for event in scene.store.load_events(execution_id) if event.type in EXECUTION_OUTCOMES]


def test_a_write_lock_held_past_the_retry_budget_stops_the_run_and_a_rerun_finishes(sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    database = scene.home / "taskloom.db"
    execution = guarded.create()
    driver = scene.drive("faultapp.flows:guarded", "run", execution, env=SMALL_BUDGET)
    wait_for(lambda: "1:waiting" in scene.markers(execution) or not driver.alive(), what="step 1 at the gate")
    assert driver.alive(), driver.stderr()
    with write_lock_held(scene, database):
        scene.gate.touch()
        opened = time.monotonic()
        assert driver.wait() == 1, driver.stderr()
        gave_up_after = time.monotonic() - opened
        report = driver.report()
        snapshot = scene.snapshot([execution])
        status = scene.status(execution)  # WAL: reads go on under another process's write lock
    assert report["error"] == "StoreUnavailableError", report
    assert str(database) in report["message"], report["message"]
    assert not [m for m in scene.markers(execution) if m.startswith("except")], "a store error reached the workflow"
    assert status in ("running", "queued"), f"not resumable: {status}"
    assert verdicts(scene, execution) == []
    assert set(snapshot) == {(execution, "0")}  # step 1 did its work; its completion never reached the store
    # the configured budgets, not the 30 s defaults, decided when to give up (margin for a slow machine)
    assert gave_up_after < BUSY_TIMEOUT + RETRY_SECONDS + 15

    rerun = scene.drive("faultapp.flows:guarded", "run", execution).report()
    assert rerun == {"execution_id": execution, "status": "completed", "output": 0 + 1 + 4}, rerun
    scene.assert_no_completed_step_ran_again(snapshot)
    assert {label for (_, label) in scene.effects()} == {"0", "1", "2"}
    assert not [m for m in scene.markers(execution) if m.startswith("except")]
    scene.assert_nothing_stuck()


def test_taskloom_run_under_a_held_write_lock_exits_non_zero_with_one_line_naming_the_file(
    sqlite_scene: Scene,
) -> None:
    scene = sqlite_scene
    database = scene.home / "taskloom.db"
    execution = guarded.create(status="queued")
    with write_lock_held(scene, database):
        run = scene.taskloom("run", "faultapp.flows:guarded", "--execution-id", execution, env=SMALL_BUDGET)
        code = run.wait()
    assert code not in (0, 130), run.stderr()
    assert "Traceback" not in run.stderr()
    # the store may log that it is retrying; the command's own verdict is its last line
    verdict = run.stderr().strip().splitlines()[-1]
    assert verdict.startswith("taskloom run: StoreUnavailableError") and str(database) in verdict, verdict
    assert scene.status(execution) in ("running", "queued")
    assert verdicts(scene, execution) == []
    scene.gate.touch()
    finished = scene.taskloom("run", "faultapp.flows:guarded", "--execution-id", execution, "--json")
    assert finished.wait() == 0, finished.stderr()
    assert scene.output(execution) == 5
    assert all(count == 1 for count in scene.effects().values()), scene.effects()
    scene.assert_nothing_stuck()


# -- a full disk ----------------------------------------------------------------------------------

#: steps of the bulky workflow and the size of each one's result: far more than the disk has room for
STEPS, SIZE = 10, 48 * 1024
#: room left on the small disk when the run starts: enough for a step or two, not for ten
HEADROOM = 200 * 1024


@dataclass(frozen=True)
class SmallDisk:
    """A folder on a 4 MiB tmpfs (``mounted``), or a plain folder when this machine refuses the mount."""

    folder: Path
    mounted: bool


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0:
        command = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)]
        mounted = subprocess.run(command, capture_output=True, check=False).returncode == 0
    try:
        yield SmallDisk(folder, mounted)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def fill(folder: Path, leave: int) -> Path:
    """A file taking all the free space of ``folder``'s file system but ``leave`` bytes."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    filler = folder / "filler"
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_stops_the_run_with_a_store_error_naming_the_file_and_a_rerun_finishes(
    small_disk: SmallDisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = small_disk.folder / "taskloom.db"
    scene = build_scene(f"sqlite:///{database}", tmp_path, monkeypatch)
    try:
        execution = bulky.create({"steps": STEPS, "size": SIZE})
        target = "faultapp.flows:bulky"
        if small_disk.mounted:
            filler: Path | None = fill(small_disk.folder, HEADROOM)
            driver = scene.drive(target, "run", execution)
        else:  # no mount here: cap the size of every file the driver writes instead
            filler = None
            cap = str(database.stat().st_size + HEADROOM)
            driver = scene.start("-m", "faultapp.limited", cap, "faultapp.drive", target, "run", execution)
        report = driver.report()
        assert driver.process.returncode == 1, report
        assert "StoreError" in report.get("classes", []), report
        assert str(database) in report["message"], report["message"]
        snapshot = scene.snapshot([execution])
        assert scene.status(execution) in ("running", "queued")
        assert verdicts(scene, execution) == []
        assert 1 <= len(snapshot) < STEPS, snapshot

        if filler is not None:
            filler.unlink()
        rerun = scene.drive(target, "run", execution).report()
        assert rerun == {"execution_id": execution, "status": "completed", "output": STEPS * SIZE}, rerun
        scene.assert_no_completed_step_ran_again(snapshot)
        assert {label for (_, label) in scene.effects()} == {str(n) for n in range(STEPS)}
        scene.assert_nothing_stuck()
    finally:
        end_scene(scene)
