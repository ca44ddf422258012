"""``secret_requests``: tasks and workflows receive secrets, missing ones fail early, values never leak.

"Never leak" is checked where a value could end up: every byte of the store's files (the database and
its write-ahead log), every event, every log record and every error message.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from taskloom import SecretNotFoundError, TaskError, WorkflowExecutionContext, task, workflow
from taskloom.secret_store import default_secret_store

API_KEY = "sk-live-7f3a9c1e5b2d4a6f"
DB_PASSWORD = "pw-Zq8xR2mN5vT1"
body_ran: list[str] = []


@pytest.fixture(autouse=True)
def reset() -> None:
    body_ran.clear()


@pytest.fixture
def secrets_set() -> None:
    store = default_secret_store()
    store.set("API_KEY", API_KEY)
    store.set("DB_PASSWORD", DB_PASSWORD)


@task(secret_requests=["API_KEY"])
def signs(data: str, secrets: dict[str, str] = {}) -> str:  # noqa: B006 - the documents' signature
    body_ran.append("signs")
    return f"{data} signed with a {len(secrets['API_KEY'])}-character key"


@task(secret_requests=["API_KEY", "DB_PASSWORD"])
async def connects(secrets: dict[str, str] = {}) -> list[str]:  # noqa: B006
    body_ran.append("connects")
    return sorted(secrets)


@task(secret_requests=["API_KEY"], retry_max_attempts=2, retry_delay=0.01)
def fails_with_secret(secrets: dict[str, str] = {}) -> None:  # noqa: B006
    body_ran.append("fails_with_secret")
    raise PermissionError("the API refused the key")


@task(secret_requests=["MISSING_TOKEN"])
def needs_missing(secrets: dict[str, str] = {}) -> str:  # noqa: B006
    body_ran.append("needs_missing")
    return "should not run"


def store_bytes(url: str) -> bytes:
    """Everything a SQLite store has on disk: the database file and its write-ahead log.

    (Other stores are checked through their events only.)
    """
    if not url.startswith("sqlite:///"):
        return b""
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def assert_not_leaked(ctx: WorkflowExecutionContext[Any], url: str, *values: str) -> None:
    raw = store_bytes(url)
    assert raw or not url.startswith("sqlite:///")
    for value in values:
        assert value.encode() not in raw
        for event in ctx.events:
            assert value.encode() not in (event.raw_value or b"")
            assert value not in repr(event.data)
            assert value not in repr(event.to_json())
        assert value not in repr(ctx.output)


# -- receiving secrets -----------------------------------------------------------------------------
@pytest.mark.usefixtures("secrets_set")
def test_direct_call_receives_the_secret() -> None:
    assert signs("report") == "report signed with a 24-character key"


@pytest.mark.usefixtures("secrets_set")
def test_async_direct_call_receives_every_requested_secret() -> None:
    assert asyncio.run(connects()) == ["API_KEY", "DB_PASSWORD"]


@pytest.mark.usefixtures("secrets_set")
def test_workflow_step_receives_the_secret_and_the_value_is_not_stored(isolated_store: str) -> None:
    @workflow
    async def signing(ctx: WorkflowExecutionContext[str]) -> list[Any]:
        return [await signs(ctx.input), await connects()]

    ctx = signing.run("invoice")
    assert ctx.output == ["invoice signed with a 24-character key", ["API_KEY", "DB_PASSWORD"]]
    assert_not_leaked(ctx, isolated_store, API_KEY, DB_PASSWORD)


@pytest.mark.usefixtures("secrets_set")
def test_workflow_secret_requests_fill_ctx_secrets(isolated_store: str) -> None:
    @workflow.with_options(secret_requests=["DB_PASSWORD"])
    async def uses_secret(ctx: WorkflowExecutionContext[None]) -> int:
        return len(ctx.secrets["DB_PASSWORD"])

    ctx = uses_secret.run()
    assert ctx.output == len(DB_PASSWORD)
    assert_not_leaked(ctx, isolated_store, DB_PASSWORD)


# -- missing secrets -------------------------------------------------------------------------------
def test_missing_secret_fails_before_the_body_runs_naming_it() -> None:
    with pytest.raises(SecretNotFoundError) as caught:
        needs_missing()
    assert "'MISSING_TOKEN'" in str(caught.value)
    assert "'needs_missing'" in str(caught.value)
    assert isinstance(caught.value, TaskError)
    assert body_ran == []


def test_missing_secret_fails_the_workflow_step_before_its_body() -> None:
    @workflow
    async def missing(ctx: WorkflowExecutionContext[None]) -> str:
        return await needs_missing()

    ctx = missing.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, SecretNotFoundError)
    assert "'MISSING_TOKEN'" in str(ctx.output)
    assert body_ran == []


def test_missing_secret_is_not_retried_or_sent_to_the_fallback() -> None:
    fallback_calls: list[int] = []
    retrying = {"retry_max_attempts": 3, "retry_delay": 0.01}
    guarded = needs_missing.with_options(fallback=lambda **_: fallback_calls, **retrying)
    with pytest.raises(SecretNotFoundError):
        guarded()
    assert body_ran == []
    assert fallback_calls == []


def test_missing_workflow_secret_fails_naming_it() -> None:
    @workflow.with_options(secret_requests=["NOT_SET"])
    async def needs(ctx: WorkflowExecutionContext[None]) -> str:
        body_ran.append("workflow")
        return "ran"

    ctx = needs.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, SecretNotFoundError)
    assert "'NOT_SET'" in str(ctx.output)
    assert body_ran == []


@pytest.mark.usefixtures("secrets_set")
def test_error_for_a_partly_missing_request_names_only_the_missing_and_no_value() -> None:
    @task(secret_requests=["API_KEY", "ALSO_MISSING"])
    def partly(secrets: dict[str, str] = {}) -> None:  # noqa: B006
        body_ran.append("partly")

    with pytest.raises(SecretNotFoundError) as caught:
        partly()
    message = str(caught.value)
    assert "'ALSO_MISSING'" in message
    assert "'API_KEY'" not in message
    assert API_KEY not in message
    assert API_KEY not in repr(caught.value)
    assert body_ran == []


# -- no leaks through failures and logs ------------------------------------------------------------
@pytest.mark.usefixtures("secrets_set")
def test_failing_secret_task_leaks_it_nowhere(isolated_store: str, caplog: pytest.LogCaptureFixture) -> None:
    @workflow
    async def failing(ctx: WorkflowExecutionContext[None]) -> None:
        await fails_with_secret()

    with caplog.at_level(logging.DEBUG):
        ctx = failing.run()
    assert ctx.has_failed
    assert body_ran == ["fails_with_secret"] * 3  # it ran, with retries
    assert isinstance(ctx.output, PermissionError)
    error_text = "\n".join([str(ctx.output), *getattr(ctx.output, "__notes__", [])])
    assert API_KEY not in error_text
    assert API_KEY not in caplog.text
    assert all(API_KEY not in record.getMessage() for record in caplog.records)
    assert_not_leaked(ctx, isolated_store, API_KEY)
    stored = failing.status(ctx.execution_id).output
    assert API_KEY not in "\n".join([str(stored), *getattr(stored, "__notes__", [])])


@pytest.mark.usefixtures("secrets_set")
def test_bad_arguments_to_a_secret_task_do_not_show_the_value() -> None:
    with pytest.raises(TypeError) as caught:
        signs("a", "b")  # type: ignore[call-arg]
    assert API_KEY not in str(caught.value)
