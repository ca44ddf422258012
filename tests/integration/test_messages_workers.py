"""Messages with real processes, on both stores: workers woken by a send (Python, CLI, HTTP through a
server), and exactly-once receipt when a worker is killed between a receipt and the next step.

On PostgreSQL the worker polls only every 30 s, so an execution continued within 6 s was woken by the
send's NOTIFY; on SQLite a send from another process is found by the worker's (short) poll.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from processes import free_port, stop, wait_for

import taskloom
from taskloom import serde
from taskloom.events import EventType
from taskloom.executions import queue_execution
from taskloom.store import Store, open_store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
MODULE = "helpers.messageflow"
TOKEN = "messages-token-0123456789"
#: well under the PostgreSQL worker's poll (30 s) and its other looks (every lease, 10 s): only a NOTIFY
#: wakes it in time there
WAKE_SECONDS = 6.0


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path),
        "TASKLOOM_API_TOKEN": TOKEN,
        "MESSAGE_LOG": str(tmp_path / "messages.log"),
        "CRASH_MARK": str(tmp_path / "crashed"),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[Store]:
    opened = open_store(env["TASKLOOM_DATABASE_URL"])
    yield opened
    opened.close()


def start_worker(env: dict[str, str], store_kind: str, *extra: str) -> subprocess.Popen[bytes]:
    poll = "30" if store_kind == "postgres" else "0.05"
    log = Path(env["TASKLOOM_HOME"]) / f"worker-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", MODULE, "--poll", poll, *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    log = Path(env["TASKLOOM_HOME"]) / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "server", MODULE, "--port", str(port)], env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, timeout=30, what="the server")
        yield url
    finally:
        stop(process)


def cli(env: dict[str, str], *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *words], env=env, cwd=env["TASKLOOM_HOME"], capture_output=True, text=True
    )


def waiting_at(store: Store, execution_id: str, receipts: int) -> bool:
    """Paused in a receive after ``receipts`` messages were taken."""
    record = store.get_execution(execution_id)
    assert record is not None
    taken = [m for m in store.list_messages(execution_id) if m.received_step is not None]
    return record.status == "paused" and len(taken) == receipts


def received(store: Store, execution_id: str) -> list[tuple[str, Any, str | None]]:
    return [(m.topic, serde.loads(m.value), m.received_step) for m in store.list_messages(execution_id)]


def test_a_worker_continues_a_waiting_execution_when_a_message_is_sent_from_python_the_cli_or_http(
    env: dict[str, str], store: Store, store_kind: str, server: str
) -> None:
    worker = start_worker(env, store_kind)
    try:
        execution_id = queue_execution(store, "conversation", f"{MODULE}:conversation", 3)
        wait_for(lambda: waiting_at(store, execution_id, 0), what="the first receive to wait")
        assert store.load_events(execution_id)[-1].name == "receive:say"

        taskloom.send(execution_id, "say", "one", store=store)
        wait_for(lambda: waiting_at(store, execution_id, 1), timeout=WAKE_SECONDS, what="a wake by taskloom.send")

        sent = cli(env, "send", execution_id, "say", '"two"', "--json")
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout) == {"execution_id": execution_id, "topic": "say", "seq": 2}
        wait_for(lambda: waiting_at(store, execution_id, 2), timeout=WAKE_SECONDS, what="a wake by taskloom send")

        sent = cli(env, "--server", server, "send", execution_id, "say", '{"n": 3}')
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.strip() == f"message 3 on topic 'say' sent to execution {execution_id}"
        done = wait_for(
            lambda: (r := store.get_execution(execution_id)) and r.status == "completed" and r,
            timeout=WAKE_SECONDS,
            what="a wake by a send through the server",
        )
        assert serde.loads(done.output) == ["re: one", "re: two", "re: {'n': 3}"]
        assert received(store, execution_id) == [("say", "one", "1"), ("say", "two", "3"), ("say", {"n": 3}, "5")]

        api = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"})
        finished = api.post(f"/executions/{execution_id}/messages", json={"topic": "say", "value": 4})
        assert finished.status_code == 409 and finished.json()["type"] == "ExecutionStateError"
        unknown = api.post("/executions/nope/messages", json={"topic": "say", "value": 4})
        assert unknown.status_code == 404 and unknown.json()["type"] == "ExecutionNotFoundError"
        blank = api.post(f"/executions/{execution_id}/messages", json={"topic": " ", "value": 4})
        assert blank.status_code == 422 and "topic" in blank.json()["error"]
        refused = cli(env, "send", execution_id, "say", "4")
        assert refused.returncode == 2 and "ExecutionStateError" in refused.stderr and "completed" in refused.stderr
        assert len(store.list_messages(execution_id)) == 3
    finally:
        stop(worker)


def test_http_send_answers_with_the_message_and_a_worker_takes_it(
    env: dict[str, str], store: Store, store_kind: str, server: str
) -> None:
    execution_id = queue_execution(store, "conversation", f"{MODULE}:conversation", 1)
    api = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"})
    response = api.post(f"/executions/{execution_id}/messages", json={"topic": "say", "value": [1, "x"]})
    assert response.status_code == 202
    assert response.json() == {"execution_id": execution_id, "topic": "say", "seq": 1}
    # A client retrying a request it got no answer to, with its idempotency key: answered, stored once.
    keyed = {"topic": "later", "value": "once", "idempotency_key": "req-1"}
    answers = [api.post(f"/executions/{execution_id}/messages", json=keyed) for _ in range(2)]
    assert [r.status_code for r in answers] == [202, 202] and answers[0].json() == answers[1].json()
    assert [m.topic for m in store.list_messages(execution_id)] == ["say", "later"]
    too_long = api.post(f"/executions/{execution_id}/messages", json={**keyed, "idempotency_key": "k" * 256})
    assert too_long.status_code == 422 and "idempotency_key" in too_long.text
    worker = start_worker(env, store_kind)
    try:
        done = wait_for(
            lambda: (r := store.get_execution(execution_id)) and r.status == "completed" and r, what="the execution"
        )
        assert serde.loads(done.output) == ["re: [1, 'x']"]
    finally:
        stop(worker)


def test_a_message_is_received_once_when_the_worker_dies_between_its_receipt_and_the_next_step(
    env: dict[str, str], store: Store, store_kind: str
) -> None:
    execution_id = queue_execution(store, "crash_after_receipt", f"{MODULE}:crash_after_receipt", None)
    taskloom.send(execution_id, "job", "first", store=store)
    taskloom.send(execution_id, "job", "second", store=store)
    doomed = start_worker(env, store_kind, "--lease", "1")
    assert doomed.wait(timeout=60) == -9, "crash_once killed its worker"
    assert received(store, execution_id) == [("job", "first", "1"), ("job", "second", None)]

    survivor = start_worker(env, store_kind, "--lease", "1")
    try:
        done = wait_for(
            lambda: (r := store.get_execution(execution_id)) and r.status == "completed" and r, what="the takeover"
        )
    finally:
        stop(survivor)
    assert serde.loads(done.output) == ["first", "second"]
    assert received(store, execution_id) == [("job", "first", "1"), ("job", "second", "3")]
    log = [line.split() for line in Path(env["MESSAGE_LOG"]).read_text().splitlines()]
    assert [(step, value) for step, value, _ in log] == [("crash_once", "first"), ("crash_once", "first")]
    assert log[0][2] == str(doomed.pid) and log[1][2] == str(survivor.pid)
    events = store.load_events(execution_id)
    receipts = [e for e in events if e.type is EventType.STEP_COMPLETED and e.name == "receive"]
    assert [(e.step_id, e.value) for e in receipts] == [("1", "first"), ("3", "second")]


def test_messages_sent_the_moment_the_previous_reply_is_recorded_are_each_answered_once(
    env: dict[str, str], store: Store, store_kind: str
) -> None:
    """Each send lands while the worker is still pausing (or releasing) the execution: the new claim and
    the ending run belong to one worker, and the ending run must not drop the new claim's lease."""
    rounds = 15
    execution_id = queue_execution(store, "conversation", f"{MODULE}:conversation", rounds)
    worker = start_worker(env, store_kind)
    try:
        for n in range(rounds):
            if n:
                reply_step = str(2 * n)  # receive 1, reply 2, receive 3, reply 4, ...

                def replied(step: str = reply_step) -> bool:
                    return any(
                        e.step_id == step and e.type is EventType.STEP_COMPLETED
                        for e in store.load_events(execution_id)
                    )

                wait_for(replied, timeout=WAKE_SECONDS, what=f"the reply to message {n - 1}")
            taskloom.send(execution_id, "say", n, store=store)
        done = wait_for(
            lambda: (r := store.get_execution(execution_id)) and r.status == "completed" and r, what="the last reply"
        )
    finally:
        stop(worker)
    assert serde.loads(done.output) == [f"re: {n}" for n in range(rounds)]
    assert done.crashes == 0
    replies = [line.split()[:2] for line in Path(env["MESSAGE_LOG"]).read_text().splitlines()]
    assert replies == [["reply", str(n)] for n in range(rounds)], "every reply step ran exactly once"


def test_the_cli_says_what_a_waiting_execution_waits_for_and_continues_it_after_a_send(
    env: dict[str, str], store: Store
) -> None:
    """Without workers: ``taskloom run`` stops at the receive, ``send`` keeps the message, and running the
    execution again (``--execution-id``) takes it; ``resume`` is refused, naming the send instead."""
    started = cli(env, "run", f"{MODULE}:conversation", "1")
    assert started.returncode == 0, started.stderr
    execution_id = store.list_executions(limit=1)[0].id
    how = f"send one with: taskloom send {execution_id} say '<JSON value>'"
    assert f"waiting for a message on 'say'; {how}" in started.stdout
    refused = cli(env, "resume", execution_id, '"yes"')
    assert refused.returncode == 2 and f"taskloom send {execution_id} say" in refused.stderr
    for _ in range(2):  # sent twice with one idempotency key (a retried script): kept once
        sent = cli(env, "send", execution_id, "say", '"hi"', "--idempotency-key", "greeting-1", "--json")
        assert sent.returncode == 0, sent.stderr
    assert [(m.topic, m.received_step) for m in store.list_messages(execution_id)] == [("say", None)]
    assert store.get_execution(execution_id).status == "paused"  # send runs no workflow code
    continued = cli(env, "run", f"{MODULE}:conversation", "--execution-id", execution_id, "--json")
    assert continued.returncode == 0, continued.stderr
    assert json.loads(continued.stdout.splitlines()[-1])["output"] == ["re: hi"]
