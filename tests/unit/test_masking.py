"""Secret values are ``***`` in every error, result, event, log line and answer written while their task runs.

The end-to-end tests run real workflows, direct calls and instances on a real store, then read what a
user or an attacker could read: every byte of the SQLite files (database and write-ahead log), the
``taskloom events --json`` and ``status --json`` output, the returned context, log records and futures.
Each check asserts both that the value is absent and that ``***`` is there, so a test cannot pass by
losing the text altogether.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from taskloom import Session, TaskControl, WorkflowExecutionContext, masking, serde, task, workflow
from taskloom.cli.main import main as cli_main
from taskloom.errors import SerializationError
from taskloom.secret_store import default_secret_store

SECRET = "sk-live-Q9w8E7r6T5y4"
OTHER = "pw-Zq8xR2mN5vT1"


@pytest.fixture
def secret_set() -> None:
    default_secret_store().set("API_KEY", SECRET)


def store_bytes(url: str) -> bytes:
    """Every byte a SQLite store has on disk (database, WAL, shared memory); empty for PostgreSQL."""
    if not url.startswith("sqlite:///"):
        return b""
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert cli_main(list(args)) == 0
    return capsys.readouterr().out


def notes_and_text(error: BaseException) -> str:
    return "\n".join([repr(error), str(error), *getattr(error, "__notes__", [])])


# -- the scope ------------------------------------------------------------------------------------------
def test_without_a_scope_nothing_is_masked_and_registering_is_a_no_op() -> None:
    masking.register_secrets([SECRET])
    assert masking.active_secrets() == ()
    assert masking.mask_text(f"key {SECRET}") == f"key {SECRET}"
    assert masking.mask_value({"k": SECRET}) == {"k": SECRET}


def test_a_scope_masks_its_values_until_it_closes() -> None:
    with masking.secret_scope():
        masking.register_secrets([SECRET, OTHER])
        assert masking.mask_text(f"a {SECRET} b {OTHER} c") == "a *** b *** c"
    assert masking.mask_text(SECRET) == SECRET


def test_empty_and_short_values_are_never_masked() -> None:
    with masking.secret_scope():
        masking.register_secrets(["", "a", "abc", "abcd"])
        assert masking.mask_text("a abc abcd") == "a abc ***"


def test_a_longer_secret_is_masked_whole_before_a_shorter_one_it_contains() -> None:
    with masking.secret_scope():
        masking.register_secrets(["token", "token-extended"])
        assert masking.mask_text("token-extended and token") == "*** and ***"


def test_nested_scopes_see_their_parents_and_pass_their_own_values_up() -> None:
    with masking.secret_scope():
        masking.register_secrets([SECRET])
        with masking.secret_scope():
            assert masking.mask_text(SECRET) == "***"
            masking.register_secrets([OTHER])
        # A nested task's secret may be in what it returned to this run: it stays masked here.
        assert masking.mask_text(OTHER) == "***"


def test_a_worker_thread_with_a_copied_context_registers_into_the_same_scope() -> None:
    with masking.secret_scope():
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(masking.register_secrets, [SECRET]))
        thread.start()
        thread.join(10)
        assert masking.mask_text(SECRET) == "***"


@dataclasses.dataclass(frozen=True)
class Receipt:
    token: str
    lines: list[str]


def test_mask_value_reaches_into_containers_dataclasses_and_exception_chains() -> None:
    with masking.secret_scope():
        masking.register_secrets([SECRET])
        assert masking.mask_value({"k": [SECRET, (f"x{SECRET}",)]}) == {"k": ["***", ("x***",)]}
        assert masking.mask_value(Receipt(SECRET, [SECRET])) == Receipt("***", ["***"])
        cause = KeyError(SECRET)
        error = ValueError(f"refused {SECRET}")
        error.__cause__ = cause
        error.add_note(f"note {SECRET}")
        assert masking.mask_value(error) is error  # in place: identity and traceback stay
        assert (error.args, error.__notes__, cause.args) == (("refused ***",), ["note ***"], ("***",))
        unrelated = Receipt("plain", [])
        assert masking.mask_value(unrelated) is unrelated


# -- serde ----------------------------------------------------------------------------------------------
def test_dumps_masks_every_str_of_a_value_and_keeps_its_types() -> None:
    value = {"receipt": Receipt(f"Bearer {SECRET}", ["a", SECRET]), "raw": SECRET.encode()}
    assert SECRET.encode() in serde.dumps(value, what="v")  # no scope: stored as it is
    with masking.secret_scope():
        masking.register_secrets([SECRET])
        blob = serde.dumps(value, what="v")
        scalar = serde.dumps(SECRET, what="v")
    assert SECRET.encode() not in blob
    assert serde.loads(blob) == {"receipt": Receipt("Bearer ***", ["a", "***"]), "raw": b"***"}
    assert serde.loads(scalar) == "***"
    assert value["receipt"].token == f"Bearer {SECRET}"  # the caller's value is untouched


def test_a_steps_plain_arguments_are_masked_too_when_a_secret_is_active() -> None:
    # dumps_arguments stores plain values as they are, but only while no secret is active.
    args = (f"Bearer {SECRET}", 7, SECRET.encode())
    assert serde.loads(serde.dumps_arguments(args, {}, what="a")) == (args, {})
    with masking.secret_scope():
        masking.register_secrets([SECRET])
        blob = serde.dumps_arguments(args, {}, what="a")
    assert SECRET.encode() not in blob
    assert serde.loads(blob) == (("Bearer ***", 7, b"***"), {})


class NeedsTwo(Exception):
    """Rebuilds only through taskloom's by-state pickling (a custom __init__)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.detail = detail


def test_dumps_error_masks_message_notes_attributes_and_causes() -> None:
    try:
        try:
            raise NeedsTwo(401, f"key {SECRET} refused")
        except NeedsTwo as inner:
            raise RuntimeError(f"call with {SECRET} failed") from inner
    except RuntimeError as caught:
        error = caught
    with masking.secret_scope():
        masking.register_secrets([SECRET])
        blob = serde.dumps_error(error, what="task 't'")
    assert SECRET.encode() not in blob
    loaded = serde.loads(blob)
    assert isinstance(loaded, RuntimeError) and isinstance(loaded.__cause__, NeedsTwo)
    assert str(loaded) == "call with *** failed"
    assert loaded.__cause__.detail == "key *** refused"
    assert any("***" in note for note in loaded.__notes__)  # the traceback note, masked too


class RefusesMasks:
    """Rebuilds only from state it validates, as a strict model might."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __setstate__(self, state: dict[str, str]) -> None:
        if "***" in state["token"]:
            raise ValueError("not a token")
        self.__dict__.update(state)


def test_a_value_that_cannot_be_rebuilt_masked_is_refused_not_stored_raw() -> None:
    value = RefusesMasks(SECRET)
    with masking.secret_scope():
        masking.register_secrets([SECRET])
        assert masking.mask_value(value) is value  # in memory: left as it is
        with pytest.raises(SerializationError, match="holds a secret"):
            serde.dumps(value, what="task 't' result")


# -- end to end: workflows ------------------------------------------------------------------------------
@task(secret_requests=["API_KEY"])
def leaky(tc: TaskControl, secrets: dict[str, str] = {}) -> dict[str, str]:  # noqa: B006
    key = secrets["API_KEY"]
    tc.log(f"calling the API with {key}", key=key)
    tc.update_status(f"authenticated as {key}")
    tc.update_progress(50, f"half way with {key}")
    return {"token": key, "header": f"Bearer {key}"}


@task(secret_requests=["API_KEY"])
def refuses(secrets: dict[str, str] = {}) -> None:  # noqa: B006
    raise PermissionError(f"the API refused {secrets['API_KEY']}")


@workflow
async def uses_the_key(ctx: WorkflowExecutionContext[None]) -> dict[str, Any]:
    result = await leaky()
    try:
        await refuses()
    except PermissionError as error:
        result["error"] = str(error)
    return result


@workflow
async def fails_with_the_key(ctx: WorkflowExecutionContext[None]) -> None:
    await refuses()


@pytest.mark.usefixtures("secret_set")
def test_a_workflow_step_writes_its_secret_nowhere(isolated_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = uses_the_key.run()
    assert ctx.has_succeeded, ctx.output
    assert ctx.output == {"token": "***", "header": "Bearer ***", "error": "the API refused ***"}
    raw = store_bytes(isolated_store)
    assert SECRET.encode() not in raw
    assert b"***" in raw or not isolated_store.startswith("sqlite:///")
    for event in ctx.events:
        assert SECRET.encode() not in (event.raw_value or b"")
        assert SECRET not in json.dumps(event.to_json(), default=str)
    logged = [e.data for e in ctx.events if e.type.value == "step_log"]
    assert logged and all("***" in d["message"] for d in logged)
    events = cli(capsys, "events", ctx.execution_id, "--json")
    status = cli(capsys, "status", ctx.execution_id, "--json")
    for output in (events, status):
        assert SECRET not in output
        assert "***" in output
    assert "authenticated as ***" in events


@pytest.mark.usefixtures("secret_set")
def test_a_failed_workflow_shows_the_error_without_the_secret(
    isolated_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = fails_with_the_key.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, PermissionError)
    assert SECRET not in notes_and_text(ctx.output)
    assert "refused ***" in str(ctx.output)
    stored = fails_with_the_key.status(ctx.execution_id).output
    assert SECRET not in notes_and_text(stored) and "***" in str(stored)
    assert SECRET.encode() not in store_bytes(isolated_store)
    status = cli(capsys, "status", ctx.execution_id, "--json")
    assert SECRET not in status and "***" in status


@pytest.mark.usefixtures("secret_set")
def test_a_workflow_that_returns_its_own_secrets_stores_them_masked(isolated_store: str) -> None:
    @workflow.with_options(secret_requests=["API_KEY"])
    async def echoes(ctx: WorkflowExecutionContext[None]) -> str:
        return f"key={ctx.secrets['API_KEY']}"

    ctx = echoes.run()
    assert ctx.has_succeeded
    assert echoes.status(ctx.execution_id).output == "key=***"
    assert SECRET.encode() not in store_bytes(isolated_store)


# -- end to end: direct calls and instances -------------------------------------------------------------
@pytest.mark.usefixtures("secret_set")
def test_a_direct_call_returns_and_raises_masked_values_and_logs_none(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert leaky() == {"token": "***", "header": "Bearer ***"}
        with pytest.raises(PermissionError) as caught:
            refuses()
    assert str(caught.value) == "the API refused ***"
    assert SECRET not in caplog.text
    assert "calling the API with ***" in caplog.text


@pytest.mark.usefixtures("secret_set")
def test_an_instance_reports_progress_logs_status_result_and_error_masked() -> None:
    with Session():
        instance = leaky.instance()
        future = instance.start()
        assert future.result(timeout=30) == {"token": "***", "header": "Bearer ***"}
        failing = refuses.instance().start()
        with pytest.raises(PermissionError) as caught:
            failing.result(timeout=30)
    assert str(caught.value) == "the API refused ***"
    assert [r.message for r in future.logs] == ["calling the API with ***"]
    assert future.status_message == "half way with ***"
    assert future.logs[0].extra == {"key": "***"}
    assert SECRET not in repr(future) + repr(instance)
