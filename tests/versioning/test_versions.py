"""The workflow ``version`` option: validated at decoration, stored with each execution, shown, and only
code of an execution's version runs it (in this process here; workers in test_versions_workers.py).

Each test runs on SQLite and PostgreSQL (the ``default`` fixture).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskloom import TaskDefinitionError, WorkflowError, WorkflowExecutionContext, workflow
from taskloom.executions import queue_execution
from taskloom.recovery import recover
from taskloom.store import Store
from taskloom.tasks import pause
from taskloom.views import execution_view
from taskloom.worker import Worker
from taskloom.workflow import Workflow

pytestmark = pytest.mark.usefixtures("default")


def billing(version: str | None) -> Workflow[Any]:
    """The workflow ``billing`` as the code of ``version`` has it."""

    async def body(ctx: WorkflowExecutionContext[int]) -> str:
        answer = await pause("approve")
        return f"{version}:{ctx.input}:{answer}"

    return workflow.with_options(name="billing", version=version)(body)


@pytest.mark.parametrize("bad", [2, "", "  ", "x" * 101, "a\x00b", ["2"]])
def test_a_bad_version_fails_at_decoration_naming_the_option(bad: Any) -> None:
    with pytest.raises(TaskDefinitionError, match=r"workflow 'billing': option 'version' must be a non-empty string"):
        workflow.with_options(name="billing", version=bad)
    with pytest.raises(TaskDefinitionError, match=r"option 'version'"):
        Workflow(billing(None).fn, name="billing", version=bad)


def test_each_execution_stores_its_version_and_shows_it(default: Store) -> None:
    versioned = billing("2").run(1)
    plain = billing(None).run(1)

    record = default.get_execution(versioned.execution_id)
    assert record is not None and record.version == "2"
    assert execution_view(record)["version"] == "2"
    unversioned = default.get_execution(plain.execution_id)
    assert unversioned is not None and unversioned.version == ""
    assert execution_view(unversioned)["version"] is None


def test_code_of_another_version_refuses_to_continue_or_resume_an_execution_and_leaves_it(default: Store) -> None:
    paused = billing("1").run(7)
    before = default.load_events(paused.execution_id)

    for attempt in (
        lambda: billing("2").run(execution_id=paused.execution_id),
        lambda: billing("2").resume(paused.execution_id, "yes"),
        lambda: billing(None).resume(paused.execution_id, "yes"),
    ):
        mismatch = r"started with version '1', but this code has (version '2'|no version)"
        with pytest.raises(WorkflowError, match=mismatch):
            attempt()
    assert default.load_events(paused.execution_id) == before
    assert billing("1").status(paused.execution_id).status == "paused"

    assert billing("1").resume(paused.execution_id, "yes").output == "1:7:yes"
    assert billing("2").run(execution_id=paused.execution_id).output == "1:7:yes", "a finished one is shown as is"


def test_an_execution_no_code_ran_yet_is_pinned_to_the_first_version_that_runs_it(default: Store) -> None:
    queued = queue_execution(default, "billing", "somewhere:billing", 3)
    assert (record := default.get_execution(queued)) is not None and record.version is None

    assert billing("2").run(execution_id=queued).is_paused
    assert (record := default.get_execution(queued)) is not None and record.version == "2"
    with pytest.raises(WorkflowError, match=r"started with version '2', but this code has version '1'"):
        billing("1").resume(queued, "yes")


def test_a_claim_takes_only_executions_of_the_versions_given_or_not_pinned_yet(default: Store) -> None:
    for execution_id, version in (("old", "1"), ("plain", ""), ("fresh", None)):
        default.create_execution(execution_id, "billing", None, "queued", "somewhere:billing")
        if version is not None:
            assert default.pin_version(execution_id, version) == version
    assert default.pin_version("old", "2") == "1", "a pinned version never changes"

    def claim(version: str) -> str | None:
        record = default.claim_next_execution("worker", 30.0, ["billing"], versions={"billing": version})
        return None if record is None else record.id

    assert claim("2") == "fresh"
    assert claim("2") is None, "a version-2 worker claimed another version's execution"
    assert claim("") == "plain"
    assert claim("1") == "old"


def test_a_worker_waits_only_for_expiries_of_its_own_version(default: Store) -> None:
    default.create_execution("old", "billing", None, "running", "somewhere:billing", lease_seconds=-1.0)
    default.pin_version("old", "1")

    assert default.next_lease_expiry(["billing"], versions={"billing": "2"}) is None
    assert default.next_lease_expiry(["billing"], versions={"billing": "1"}) is not None


def test_recover_leaves_an_execution_of_another_version_as_it_was_and_says_why(
    default: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "billing_two.py").write_text(
        "from taskloom import workflow\n\n\n"
        "@workflow.with_options(name='billing', version='2')\n"
        "async def billing(ctx):\n"
        "    return 'version 2 ran it'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    default.create_execution("interrupted", "billing", None, "running", "billing_one:billing")  # no lease: due
    default.pin_version("interrupted", "1")
    before = default.load_events("interrupted")

    report = recover(default, ["billing_two"])

    assert report.finished == []
    [(execution_id, reason)] = report.failed_to_run
    assert execution_id == "interrupted"
    assert "started with version '1', but this code has version '2'" in reason
    assert (record := default.get_execution("interrupted")) is not None and record.status == "running"
    assert default.load_events("interrupted") == before


def test_a_worker_says_which_version_of_each_workflow_it_runs(default: Store, caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker({"billing": billing("2"), "plain": workflow.with_options(name="plain")(billing(None).fn)})
    worker.stop()  # run() returns at once, after logging what it serves
    with caplog.at_level("INFO", logger="taskloom.worker"):
        worker.run()
    assert f"worker {worker.worker_id}: running workflows billing (version 2), plain" in caplog.messages


def test_an_execution_started_for_workers_carries_the_starting_codes_version(
    default: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKLOOM_START", "queue")
    handle = billing("2").start(5)
    record = default.get_execution(handle.execution_id)
    assert record is not None and record.version == "2"  # not left for whichever worker comes first

    def claim(version: str) -> str | None:
        claimed = default.claim_next_execution("worker", 30.0, ["billing"], versions={"billing": version})
        return None if claimed is None else claimed.id

    assert claim("1") is None, "a version-1 worker took an execution that version-2 code started"
    assert claim("2") == handle.execution_id


def test_taskloom_status_names_the_version(default: Store, capsys: pytest.CaptureFixture[str]) -> None:
    from taskloom.cli.main import main

    paused = billing("2").run(4)
    assert main(["status", paused.execution_id]) == 0
    assert "version 2" in capsys.readouterr().out.splitlines()[1]
