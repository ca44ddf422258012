"""Every log record says where it was made: ``execution_id``, ``workflow``, ``step_id``, ``task`` and
``instance_id``, in the workflow body, in each step (its own logger's records and the user's), in each
branch of ``parallel``/``map``, in an instance; None outside, so a format naming them never fails."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from conftest import Collected

import taskloom
from taskloom import Session, TaskControl, WorkflowExecutionContext, task, workflow
from taskloom.tasks import parallel

FIELDS = ("execution_id", "workflow", "step_id", "task", "instance_id")
user_log = logging.getLogger("obs.user")  # the user's own logger, not one of taskloom's


def origin_of(record: logging.LogRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, name) for name in FIELDS)


@task
def greet(name: str) -> str:
    user_log.info("greeting %s", name)
    return f"hello {name}"


@task
async def greet_async(name: str) -> str:
    user_log.info("async greeting %s", name)
    return f"hi {name}"


@task(timeout=30)
def greet_in_its_own_thread(name: str) -> str:
    """A timeout runs the body in a daemon thread of its own (policy.run_in_thread, isolated)."""
    user_log.info("isolated greeting %s", name)
    return name


@task
def greet_through_control(tc: TaskControl, name: str) -> str:
    tc.log(f"controlled greeting {name}")  # the default handler logs it to the taskloom.task logger
    return name


@task
async def fan_out(names: list[str]) -> list[str]:
    """An async step whose body fans out: its calls are steps "k.1", "k.2", ... under it."""
    return list(await parallel(*(greet(n) for n in names)))


@workflow
async def greetings(ctx: WorkflowExecutionContext[list[str]]) -> list[str]:
    ctx.logger.info("workflow body")
    first = await greet(ctx.input[0])
    second = await greet_async(ctx.input[1])
    mapped = await greet.map(ctx.input[2:4])
    fanned = await fan_out(ctx.input[4:6])
    await greet_in_its_own_thread("g")
    await greet_through_control("h")
    taskloom.logger.info("after the steps")
    return [first, second, *mapped, *fanned]


def test_records_in_the_body_and_each_step_carry_the_execution_its_step_and_task(
    isolated_store: str, collected: Collected
) -> None:
    ctx = greetings.run(["a", "b", "c", "d", "e", "f"])
    assert ctx.has_succeeded
    run = ctx.execution_id
    records = collected.by_message()
    seen = {message: origin_of(record) for message, record in records.items()}
    assert seen["workflow body"] == (run, "greetings", None, None, None)
    assert seen["greeting a"] == (run, "greetings", "1", "greet", None)
    assert seen["async greeting b"] == (run, "greetings", "2", "greet_async", None)
    # map's branches, each its own step
    assert seen["greeting c"] == (run, "greetings", "3", "greet", None)
    assert seen["greeting d"] == (run, "greetings", "4", "greet", None)
    # parallel branches inside an async step's body: steps under that step
    assert seen["greeting e"] == (run, "greetings", "5.1", "greet", None)
    assert seen["greeting f"] == (run, "greetings", "5.2", "greet", None)
    assert seen["isolated greeting g"] == (run, "greetings", "6", "greet_in_its_own_thread", None)
    assert seen["greet_through_control: controlled greeting h"] == (
        run,
        "greetings",
        "7",
        "greet_through_control",
        None,
    )
    assert seen["after the steps"] == (run, "greetings", None, None, None)


def test_ctx_logger_is_a_standard_logger_named_after_the_workflow(isolated_store: str, collected: Collected) -> None:
    greetings.run(["a", "b", "c", "d", "e", "f"])
    body = collected.by_message()["workflow body"]
    assert body.name == "taskloom.user.greetings"
    assert logging.getLogger("taskloom.user.greetings").parent is taskloom.logger
    assert taskloom.logger.name == "taskloom.user"


def test_records_of_two_executions_running_at_once_carry_their_own_ids(
    isolated_store: str, collected: Collected
) -> None:
    first = greetings.start(["a1", "b1", "c1", "d1", "e1", "f1"])
    second = greetings.start(["a2", "b2", "c2", "d2", "e2", "f2"])
    first.result(timeout=60), second.result(timeout=60)
    seen = collected.by_message()
    assert seen["greeting a1"].execution_id == first.execution_id  # type: ignore[attr-defined]
    assert seen["greeting f2"].execution_id == second.execution_id  # type: ignore[attr-defined]
    assert seen["greeting f2"].step_id == "5.2"  # type: ignore[attr-defined]


def test_records_outside_any_execution_have_every_field_as_none(collected: Collected) -> None:
    logging.getLogger("obs.elsewhere").warning("not in a workflow")
    record = collected.by_message()["not in a workflow"]
    assert origin_of(record) == (None,) * len(FIELDS)


def test_a_format_naming_the_fields_never_fails_inside_or_outside_an_execution(
    isolated_store: str, collected: Collected
) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(execution_id)s|%(step_id)s|%(task)s|%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("obs.elsewhere").info("outside")
        ctx = greetings.run(["a", "b", "c", "d", "e", "f"])
    finally:
        root.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert "None|None|None|outside" in lines
    assert f"{ctx.execution_id}|1|greet|greeting a" in lines


class JsonFormatter(logging.Formatter):
    """What structured-logging setups do: dump the record's attributes (python-json-logger, structlog's
    ExtraAdder) rather than a format string."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({key: value for key, value in vars(record).items() if key in (*FIELDS, "msg")})


def test_a_json_formatter_dumping_the_record_sees_the_fields(isolated_store: str) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    user_log.addHandler(handler)
    user_log.setLevel(logging.INFO)
    try:
        ctx = greetings.run(["a", "b", "c", "d", "e", "f"])
    finally:
        user_log.removeHandler(handler)
        user_log.setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    first = next(line for line in lines if line["msg"] == "greeting %s")
    assert first == {
        "msg": "greeting %s",
        "execution_id": ctx.execution_id,
        "workflow": "greetings",
        "step_id": "1",
        "task": "greet",
        "instance_id": None,
    }


def test_records_of_an_instance_carry_its_task_and_instance_id(collected: Collected) -> None:
    with Session():
        instance = greet.instance()
        instance.start("instance")
        instance.future.result(timeout=30)
    record = collected.by_message()["greeting instance"]
    assert origin_of(record) == (None, None, None, "greet", instance.id)


def test_taskloom_loggers_put_the_fields_back_when_a_later_factory_drops_them(
    isolated_store: str, collected: Collected
) -> None:
    """A factory installed after taskloom that does not call the previous one: ctx.logger still says where."""
    taskloom_factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        ctx = greetings.run(["a", "b", "c", "d", "e", "f"])
    finally:
        logging.setLogRecordFactory(taskloom_factory)
    seen = collected.by_message()
    assert origin_of(seen["workflow body"]) == (ctx.execution_id, "greetings", None, None, None)
    assert origin_of(seen["after the steps"]) == (ctx.execution_id, "greetings", None, None, None)


def test_the_record_factory_is_installed_once_and_keeps_the_one_before_it() -> None:
    from taskloom import logs

    made: list[str] = []
    before = logging.getLogRecordFactory()

    def earlier(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append("earlier")
        return logging.LogRecord(*args, **kwargs)

    logging.setLogRecordFactory(earlier)
    try:
        logs.install_record_factory()
        logs.install_record_factory()
        record = logging.getLogger("obs.x").makeRecord("obs.x", logging.INFO, "f", 1, "m", (), None)
    finally:
        logging.setLogRecordFactory(before)
    assert made == ["earlier"]
    assert record.execution_id is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", FIELDS)
def test_extra_may_not_reuse_a_field_name(name: str) -> None:
    """The one cost of the factory, pinned so the README's note stays true: logging refuses the clash."""
    with pytest.raises(KeyError, match=name):
        logging.getLogger("obs.x").warning("clash", extra={name: "mine"})


IMPORTED_BEFORE_LOGGING = """
import sys
import taskloom
assert "logging" not in sys.modules, "import taskloom loaded logging"
from taskloom import task, workflow

@task
def shout(name):
    import logging
    logging.getLogger("fresh").warning("in the step %s", name)
    return name.upper()

@workflow
async def loud(ctx):
    return await shout(ctx.input)

import logging
logging.basicConfig(format="%(execution_id)s|%(workflow)s|%(step_id)s|%(task)s|%(message)s", stream=sys.stdout)
logging.warning("before any run")
ctx = loud.run("x")
print("id", ctx.execution_id)
spec_loader = logging.__spec__.loader
assert logging.__loader__ is spec_loader and type(spec_loader).__name__ == "SourceFileLoader", spec_loader
"""


def test_logging_imported_after_taskloom_still_gets_the_origin_on_every_record(tmp_path: Any) -> None:
    """``import taskloom`` does not load logging: the record factory is installed when the program
    imports it (taskloom.logs' post-import hook), before the first record, and logging's own loader
    stays on it."""
    import os
    import subprocess
    import sys

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'taskloom.db'}",
    }
    out = subprocess.run(
        [sys.executable, "-c", IMPORTED_BEFORE_LOGGING], env=env, capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    execution_id = lines[-1].split()[-1]
    assert lines[:2] == [
        "None|None|None|None|before any run",
        f"{execution_id}|loud|1|shout|in the step x",
    ], out.stderr
