"""A live stream survives its server dying and coming back on the same port (issue 9).

A real ``taskloom server`` process serves an execution's stream to :class:`TaskloomClient` while this
process runs the workflow (embedded, on the same SQLite file), one gated step at a time. Mid-stream the
server is killed. While it is down, a bare TCP listener holds its port: it reads each reconnection
attempt's request (to see its ``Last-Event-ID``), notes when it came, and hangs up without answering,
as a server that is still starting might. More of the workflow runs meanwhile. Then the server starts
again on the same port, and the client must carry on from the last event it had: every event once, in
order, and the waits between attempts growing from ``Reconnect.first`` to ``Reconnect.cap`` and no further.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from processes import free_port, kill, stop, wait_for

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.client import Reconnect, TaskloomClient
from taskloom.errors import TaskloomError
from taskloom.store import open_store
from taskloom.store.base import Store

pytestmark = pytest.mark.integration

STEPS = 3
GATES = [threading.Event() for _ in range(STEPS)]
#: a wide range of waits, so that growth shows even if the first attempts come before the listener is up
RECONNECT = Reconnect(first=0.02, cap=0.8, give_up_after=60.0)
#: what scheduling on a busy machine may add to a wait, measured on the wire (a generous upper bound)
LATE = 0.5


@task
def gated_step(i: int) -> int:
    assert GATES[i].wait(60), f"gate {i} was never opened"
    return i


@workflow
async def gated_reconnect_flow(ctx: WorkflowExecutionContext[None]) -> int:
    for i in range(STEPS):
        await gated_step(i)
    return STEPS


# -- the pieces -----------------------------------------------------------------------------------------
def start_server(env: dict[str, str], folder: Path, port: int) -> subprocess.Popen[bytes]:
    """``taskloom server`` on ``port``, returned once /health answers."""
    with (folder / f"server-{time.monotonic_ns()}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "server", "--port", str(port)], env=env, stdout=log, stderr=log
        )

    def healthy() -> bool:
        assert process.poll() is None, "the server exited"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, 30, what="the server to answer /health")
    return process


@dataclass
class HangUpListener:
    """A TCP listener on ``port`` that reads each request, notes it, and closes without an answer."""

    port: int
    attempts: list[tuple[float, str | None]] = field(default_factory=list)  # (when, Last-Event-ID)
    _socket: socket.socket = field(init=False)
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", self.port))
        self._socket.listen(16)
        self._thread = threading.Thread(target=self._serve, name="hang-up", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed: the real server takes the port back
                return
            when = time.monotonic()
            with connection:
                connection.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    request += chunk
            self.attempts.append((when, _header(request, "last-event-id")))

    def close(self) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(timeout=10)


def _header(request: bytes, name: str) -> str | None:
    for line in request.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


@dataclass
class Reader:
    """Reads one execution's stream in a thread, keeping what arrives."""

    client: TaskloomClient
    execution_id: str
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._read, name="stream-reader", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for kind, data in self.client.stream(self.execution_id):
                self.messages.append((kind, data))
        except BaseException as error:
            self.error = error

    def seqs(self) -> list[int]:
        return [data["seq"] for kind, data in self.messages if kind != "end"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'taskloom.db'}",
        "TASKLOOM_HOME": str(tmp_path / "home"),
        "TASKLOOM_API_TOKEN": secrets.token_urlsafe(24),
    }
    env.pop("TASKLOOM_SERVER_URL", None)
    return env


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[Store]:
    opened = open_store(env["TASKLOOM_DATABASE_URL"])
    yield opened
    opened.close()


def run_in_thread(store: Store) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: asyncio.run(gated_reconnect_flow.arun(None, store=store)), name="workflow", daemon=True
    )
    thread.start()
    return thread


# -- the test -------------------------------------------------------------------------------------------
def test_a_stream_resumes_after_its_server_restarts_with_growing_bounded_waits_and_no_duplicates(
    env: dict[str, str], store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for gate in GATES:
        gate.clear()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(env, tmp_path, port)
    flow = run_in_thread(store)
    execution_id = wait_for(lambda: [r.id for r in store.list_executions(workflow=gated_reconnect_flow.name)], 30)[0]
    caplog.set_level(logging.INFO, logger="taskloom.client")

    with TaskloomClient(url, env["TASKLOOM_API_TOKEN"], reconnect=RECONNECT) as client:
        reader = Reader(client, execution_id)
        GATES[0].set()
        wait_for(lambda: any(d.get("type") == "step_completed" for _, d in reader.messages), 30, what="step 1")

        kill(server)  # mid-stream: the connection drops
        listener = HangUpListener(port)
        try:
            GATES[1].set()  # the workflow goes on while the server is down
            wait_for(lambda: len(listener.attempts) >= 8, 30, what="eight reconnection attempts")
        finally:
            listener.close()
        before_drop = reader.seqs()[-1]
        assert before_drop < store.load_events(execution_id, 0)[-1].seq, "events were written while it was down"

        server = start_server(env, tmp_path, port)
        try:
            GATES[2].set()
            reader.thread.join(timeout=60)
            flow.join(timeout=60)
        finally:
            stop(server)

    assert reader.error is None, reader.error
    everything = [event.seq for event in store.load_events(execution_id, 0)]
    assert reader.seqs() == everything, "every event once, in order, across the restart"
    kind, end = reader.messages[-1]
    assert kind == "end" and end == {"execution_id": execution_id, "status": "completed", "last_seq": everything[-1]}

    # Every attempt while the server was down asked to continue after the last event the client had.
    assert {last_event_id for _, last_event_id in listener.attempts} == {str(before_drop)}

    # The waits the client chose: from at most `first`, never shorter than the one before until they
    # reach the cap's range, and never longer than the cap.
    planned: list[float] = [record.args[-1] for record in caplog.records if "reconnecting" in record.msg]  # type: ignore[index]
    assert len(planned) >= 9
    assert planned[0] <= RECONNECT.first
    assert all(wait <= RECONNECT.cap for wait in planned)
    assert all(later >= min(earlier, RECONNECT.cap / 2) for earlier, later in pairwise(planned)), planned
    assert max(planned) >= RECONNECT.cap / 2

    # The same on the wire: each gap between two attempts the listener saw is one of those waits, in
    # order (never shorter: the client sleeps after the listener hung up; at most LATE longer).
    gaps = [later - earlier for (earlier, _), (later, _) in pairwise(listener.attempts)]
    assert any(
        all(wait <= gap <= wait + LATE for wait, gap in zip(planned[start:], gaps, strict=False))
        for start in range(len(planned) - len(gaps) + 1)
    ), (planned, gaps)


def test_a_stream_gives_up_when_the_server_never_comes_back(tmp_path: Path) -> None:
    """A server that keeps hanging up: the client stops after ``give_up_after`` seconds, saying so."""
    listener = HangUpListener(free_port())
    reconnect = Reconnect(first=0.01, cap=0.1, give_up_after=1.0)
    try:
        with TaskloomClient(f"http://127.0.0.1:{listener.port}", "t", reconnect=reconnect) as client:
            started = time.monotonic()
            with pytest.raises(TaskloomError, match="cannot reach the taskloom server"):
                list(client.stream("some-execution"))
            elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert reconnect.give_up_after <= elapsed <= reconnect.give_up_after + reconnect.cap + 1.0
    assert len(listener.attempts) >= 8, "it kept trying, a little later each time"
