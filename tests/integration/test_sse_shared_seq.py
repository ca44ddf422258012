"""A stream dropped between a step's start and its outcome, which share one seq (one stored row, issue 12).

A scripted server on a real socket plays the stream of :class:`TaskloomClient`: its first connection
sends an event and the next step's start, then hangs up before that step's outcome (same id); each later
connection answers the ``Last-Event-ID`` it is sent as the real server would (every event above it, then
``end``). The client must give every event once, in order, and so must resume before the start's id.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from taskloom.client import Reconnect, TaskloomClient

#: (seq, type) of the execution's events; a step's start and outcome share their row's seq
EVENTS = [(1, "execution_started"), (2, "step_started"), (2, "step_completed"), (3, "step_started")]
EVENTS += [(3, "step_completed"), (4, "execution_completed")]
#: the first connection hangs up after this many events: just after step 3's start
CUT = 4


def message(seq: int, kind: str) -> bytes:
    data = json.dumps({"seq": seq, "type": kind})
    return f"id: {seq}\nevent: {kind}\ndata: {data}\n\n".encode()


class ScriptedServer:
    """Answers each connection with the events after its Last-Event-ID, the first one cut short."""

    def __init__(self) -> None:
        self.asked: list[str | None] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="scripted-sse", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                after = last_event_id(request)
                self.asked.append(after)
                events = [(seq, kind) for seq, kind in EVENTS if seq > int(after or 0)]
                if len(self.asked) == 1:  # cut short, without its end: the client must come back
                    body = b"".join(message(seq, kind) for seq, kind in events[:CUT])
                else:
                    body = b"".join(message(seq, kind) for seq, kind in events)
                    body += b'event: end\ndata: {"status": "completed"}\n\n'
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + body
                )

    def close(self) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self._socket.close()
        self._thread.join(timeout=10)


def last_event_id(request: bytes) -> str | None:
    for line in request.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "last-event-id":
            return value.strip()
    return None


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


def test_a_drop_between_a_steps_start_and_outcome_loses_and_repeats_nothing(server: ScriptedServer) -> None:
    reconnect = Reconnect(first=0.01, cap=0.05, give_up_after=10.0)
    with TaskloomClient(f"http://127.0.0.1:{server.port}", "token", reconnect=reconnect) as client:
        got = [(data.get("seq"), kind) for kind, data in client.stream("e1")]

    assert got == [*EVENTS, (None, "end")]
    # resumed just before step 3's seq (its start was given, its outcome not yet), and its start skipped
    assert server.asked == ["0", "2"]
