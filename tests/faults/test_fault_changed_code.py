"""Code that changed between two runs: a result class renamed, so a recorded value no longer unpickles.

Two versions of one module sit in two folders; each run imports one of them. The run with the renamed
class fails with UndecodableValueError and leaves the execution exactly as it was (status and events), so
the original code still finishes it.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from faultkit import Scene, interrupt
from processes import wait_for

pytestmark = pytest.mark.integration

MODULE = '''
"""Version {version}: the step's result class is called {cls}."""
from dataclasses import dataclass

from faultapp.effects import note
from faultapp.flows import gated_step
from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import pause


@dataclass
class {cls}:
    value: int


@task
def measure(execution_id: str, label: str) -> {cls}:
    note(execution_id, label)
    return {cls}(42)


@workflow
async def metered(ctx: WorkflowExecutionContext[None]) -> str:
    reading = await measure(ctx.execution_id, "0")
    answer = await pause("go")
    return f"{{reading.value}} {{answer}}"


@workflow
async def gated(ctx: WorkflowExecutionContext[None]) -> str:
    reading = await measure(ctx.execution_id, "0")
    await gated_step(ctx.execution_id, "1")
    return f"{{reading.value}} gated"
'''


def version(scene: Scene, number: int, cls: str) -> dict[str, str]:
    """The environment of a run that imports version ``number`` of ``metered`` (result class ``cls``)."""
    folder = scene.home / f"v{number}"
    folder.mkdir(exist_ok=True)
    (folder / "metered.py").write_text(MODULE.format(version=number, cls=cls))
    return {"PYTHONPATH": os.pathsep.join([str(folder), scene.env["PYTHONPATH"]])}


def event_list(scene: Scene, execution: str) -> list[tuple[int, str, str | None]]:
    return [(event.seq, event.type, event.step_id) for event in scene.store.load_events(execution)]


def test_a_renamed_result_class_raises_undecodable_and_the_original_code_finishes(sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    original, renamed = version(scene, 1, "Reading"), version(scene, 2, "Measurement")
    paused = scene.drive("metered:metered", "new", env=original).report()
    assert paused["status"] == "paused", paused
    execution = paused["execution_id"]
    before = event_list(scene, execution)

    failed = scene.drive("metered:metered", "resume", execution, json.dumps("yes"), env=renamed)
    report = failed.report()
    assert failed.process.returncode == 1, report
    assert report["error"] == "UndecodableValueError", report
    assert "NonDeterminismError" in report["classes"]
    assert scene.status(execution) == "paused"
    assert event_list(scene, execution) == before, "the failed run changed the execution"

    finished = scene.drive("metered:metered", "resume", execution, json.dumps("yes"), env=original).report()
    assert finished == {"execution_id": execution, "status": "completed", "output": "42 yes"}, finished
    assert scene.effects() == {(execution, "0"): 1}, "the completed step ran again"
    scene.assert_nothing_stuck()


def test_a_renamed_result_class_on_rerun_of_a_killed_execution_leaves_it_for_the_original_code(
    sqlite_scene: Scene,
) -> None:
    """The same fault on ``wf.run(execution_id=...)`` of an execution whose first process was killed."""
    scene = sqlite_scene
    original, renamed = version(scene, 1, "Reading"), version(scene, 2, "Measurement")
    first = scene.drive("metered:gated", "new", env=original)
    waiting = wait_for(
        lambda: next((line for line in read_log(scene) if line.endswith(":1:waiting")), None) or not first.alive(),
        what="step 1 at the gate",
    )
    assert first.alive(), first.stderr()
    execution = str(waiting).split(":")[0]
    assert interrupt(first, signal.SIGKILL) == -signal.SIGKILL
    before = event_list(scene, execution)

    failed = scene.drive("metered:gated", "run", execution, env=renamed)
    report = failed.report()
    assert report.get("error") == "UndecodableValueError", report
    assert scene.status(execution) == "running"
    assert event_list(scene, execution) == before, "the failed run changed the execution"

    scene.gate.touch()
    finished = scene.drive("metered:gated", "run", execution, env=original).report()
    assert finished == {"execution_id": execution, "status": "completed", "output": "42 gated"}, finished
    assert scene.effects() == {(execution, "0"): 1, (execution, "1"): 1}
    scene.assert_nothing_stuck()


def read_log(scene: Scene) -> list[str]:
    return scene.log.read_text().splitlines() if scene.log.exists() else []
