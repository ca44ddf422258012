"""A small synchronous client of the HTTP API, used by the CLI's ``--server`` and the remote backend.

Each method mirrors one route and returns the route's JSON (plain dicts and lists). A refusal comes back
as the taskloom error the server named (``ExecutionNotFoundError``, ``WorkflowError``, ...) carrying the
server's message; anything else (no server, a wrong token, a server error) is a
:class:`~taskloom.errors.TaskloomError` that says what happened. ``httpx`` and ``httpx-sse`` are imported
only when a client is created, so ``import taskloom`` stays fast.

Live streams (:meth:`TaskloomClient.stream`, :meth:`TaskloomClient.session_updates`) are read with
``httpx-sse``. A stream that drops (the server restarts, a proxy cuts it) is reconnected with
``Last-Event-ID`` set to the last id seen, so nothing is lost or repeated, after waits that grow from
:attr:`Reconnect.first` to :attr:`Reconnect.cap` (with jitter, so that many clients of one restarted server
do not all come back at once), until :attr:`Reconnect.give_up_after` seconds pass without an event.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from taskloom import errors
from taskloom.errors import ExecutionNotFoundError, SecretNotFoundError, TaskloomError, WorkflowError
from taskloom.events import Event, EventType
from taskloom.settings import Settings

if TYPE_CHECKING:
    import ssl

    from httpx_sse import ServerSentEvent

__all__ = ["Reconnect", "TaskloomClient", "event_from_json"]

log = logging.getLogger("taskloom.client")

#: statuses a restarting server (or the proxy in front of it) answers with for a while: retried in a stream
_RETRIED_STATUSES = frozenset({502, 503, 504})
#: how a status code maps to an error when the server did not name one
_ERROR_OF_STATUS: dict[int, type[TaskloomError]] = {404: ExecutionNotFoundError, 409: WorkflowError}


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a live stream comes back after it drops: the waits between attempts, and when to stop.

    The n-th wait is drawn from ``[step / 2, step]`` where ``step`` doubles from ``first`` up to ``cap``:
    each wait is at least as long as the one before until the cap is reached, and none is longer than
    ``cap``. After ``give_up_after`` seconds without an event the stream raises a
    :class:`~taskloom.errors.TaskloomError` saying the server cannot be reached.
    """

    first: float = 0.1
    cap: float = 5.0
    give_up_after: float = 60.0

    def waits(self) -> Iterator[float]:
        step = self.first
        while True:
            yield random.uniform(step / 2, step)
            step = min(step * 2, self.cap)


def _tls_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """What httpx verifies a server's certificate with: the system's authorities, or those of ``ca_bundle``.

    A missing or unreadable bundle is named here, at once, rather than as a TLS failure on the first call.
    """
    if ca_bundle is None:
        return True
    import ssl

    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as error:
        raise TaskloomError(
            f"TASKLOOM_CA_BUNDLE / ca_bundle={ca_bundle!r} is not a readable PEM file of certificates: {error}"
        ) from None


class TaskloomClient:
    """Talks to ``taskloom server`` at ``url`` with ``token``.

    ``url`` defaults to ``TASKLOOM_SERVER_URL``; ``token`` to ``TASKLOOM_API_TOKEN`` or the token file in
    the taskloom home folder. ``transport`` is a synchronous ``httpx`` transport (``httpx.MockTransport``
    in tests); by default the client talks HTTP to ``url``. ``reconnect`` says how live streams come back
    after a drop. ``ca_bundle`` (default ``TASKLOOM_CA_BUNDLE``) is a PEM file of the certificate
    authorities trusted for an ``https://`` server; certificates are always verified, against the
    system's authorities when it is not given.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: Any = None,
        reconnect: Reconnect = Reconnect(),
        ca_bundle: str | None = None,
    ) -> None:
        settings = Settings.from_env()
        url = url or settings.server_url
        if not url:
            raise TaskloomError("no server URL: pass --server URL or set TASKLOOM_SERVER_URL")
        verify = _tls_context(ca_bundle or settings.ca_bundle)
        if token is None:
            from taskloom.server.auth import load_api_token

            token = load_api_token(settings, create=False).value
        try:
            import httpx
            import httpx_sse  # noqa: F401  # checked here so that a stream does not fail on it later
        except ImportError as error:
            raise TaskloomError(
                f"the client needs httpx and httpx-sse ({error}); install them with: pip install 'taskloom[server]'"
            ) from None
        self.url = url.rstrip("/")
        self.reconnect = reconnect
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            verify=verify,
        )

    def __repr__(self) -> str:
        return f"TaskloomClient({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TaskloomClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- executions --------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/health")
        return result

    def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        execution_id: str | None = None,
        delay: float | None = None,
        queue: str | None = None,
        priority: int = 0,
    ) -> dict[str, Any]:
        """Queue an execution of ``workflow`` (a name or ``module:qualname`` the server knows).

        With ``execution_id`` an existing execution of that id is returned instead (``created`` False);
        ``delay`` (seconds) keeps workers from starting it before then; ``queue`` and ``priority`` place it
        (:mod:`taskloom.queues`)."""
        body: dict[str, Any] = {"workflow": workflow, "input": input}
        if execution_id is not None:
            body["execution_id"] = execution_id
        if delay is not None:
            body["delay"] = delay
        if queue is not None:
            body["queue"] = queue
        if priority:
            body["priority"] = priority
        result: dict[str, Any] = self._call("POST", "/executions", json=body)
        return result

    def list_executions(
        self, *, workflow: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if workflow:
            params["workflow"] = workflow
        if status:
            params["status"] = status
        executions: list[dict[str, Any]] = self._call("GET", "/executions", params=params)["executions"]
        return executions

    def status(self, execution_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", _execution_path(execution_id))
        return result

    def queues(self) -> list[dict[str, Any]]:
        """Every queue's limits, depth (``queued``) and ``running`` count (``GET /queues``)."""
        queues: list[dict[str, Any]] = self._call("GET", "/queues")["queues"]
        return queues

    def workers(self) -> list[dict[str, Any]]:
        """The live workers: ``worker_id``, ``workflows``, ``tasks``, ``holds``, ``last_seen``, ..."""
        workers: list[dict[str, Any]] = self._call("GET", "/workers")["workers"]
        return workers

    def events(self, execution_id: str, *, after: int = 0) -> list[dict[str, Any]]:
        path = _execution_path(execution_id, "events")
        events: list[dict[str, Any]] = self._call("GET", path, params={"after": after})["events"]
        return events

    def resume(self, execution_id: str, input: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", _execution_path(execution_id, "resume"), json={"input": input})
        return result

    def send(
        self, execution_id: str, topic: str, value: Any = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Send ``value`` (JSON) to the execution's ``receive(topic)``: ``{execution_id, topic, seq}``.

        With ``idempotency_key``, sending again with the same key answers the first message's seq and
        stores nothing (see :func:`taskloom.send`)."""
        body: dict[str, Any] = {"topic": topic, "value": value}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        result: dict[str, Any] = self._call("POST", _execution_path(execution_id, "messages"), json=body)
        return result

    def cancel(self, execution_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", _execution_path(execution_id, "cancel"))
        return result

    def stream(self, execution_id: str, *, after: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
        """Live ``(event type, data)`` pairs until the execution finishes or pauses; ``("end", ...)`` last.

        A dropped connection is resumed from the last seq seen (``Last-Event-ID``), so no event is lost
        or repeated; see :class:`Reconnect`.
        """
        for message in self._follow(_execution_path(execution_id, "stream"), after):
            yield message.event, message.json()
            if message.event == "end":
                return

    # -- task instances (the remote backend) ---------------------------------------------------------
    def start_instances(self, instances: list[dict[str, Any]]) -> dict[str, Any]:
        """Queue task instances for instance workers: each a dict with ``instance_id``, ``session_id``,
        ``task``, ``target`` (``module:qualname``) and optionally ``session_name``, ``max_parallel``,
        ``args`` (a list) and ``kwargs`` (a dict), all JSON. Repeating an instance id queues nothing twice."""
        result: dict[str, Any] = self._call("POST", "/instances", json={"instances": instances})
        return result

    def instance(self, instance_id: str) -> dict[str, Any]:
        """A task instance's status, and its result or error (as JSON) once finished."""
        result: dict[str, Any] = self._call("GET", _instance_path(instance_id))
        return result

    def stop_instance(self, instance_id: str) -> dict[str, Any]:
        """Ask a task instance to stop (``tc.should_stop``); what it then returns is its result."""
        result: dict[str, Any] = self._call("POST", _instance_path(instance_id, "stop"))
        return result

    def cancel_instance(self, instance_id: str) -> dict[str, Any]:
        """Cancel a task instance: a queued one never runs; a running one is asked to stop."""
        result: dict[str, Any] = self._call("POST", _instance_path(instance_id, "cancel"))
        return result

    def session_updates(self, session_id: str, *, after: int = 0) -> Iterator[list[dict[str, Any]]]:
        """Batches of a session's instance updates (``{"seq", "instance_id", "kind", "data"}``) as they come,
        until no instance of the session is queued or running any more.

        A dropped connection is resumed after the last seq seen (``Last-Event-ID``), so no update is lost
        or repeated; see :class:`Reconnect`.
        """
        for message in self._follow(f"/sessions/{quote(session_id, safe='')}/updates", after):
            if message.event == "end":
                return
            batch: list[dict[str, Any]] = message.json()
            if batch:
                yield batch

    # -- secrets -----------------------------------------------------------------------------------
    def set_secret(self, name: str, value: str) -> None:
        self._call("PUT", _secret_path(name), json={"value": value})

    def list_secrets(self) -> list[str]:
        names: list[str] = self._call("GET", "/secrets")["names"]
        return names

    def remove_secret(self, name: str) -> bool:
        """True if the secret existed (mirrors :meth:`SecretStore.remove`)."""
        try:
            self._call("DELETE", _secret_path(name))
        except SecretNotFoundError:
            return False
        return True

    # -- plumbing ----------------------------------------------------------------------------------
    def _follow(self, path: str, after: int) -> Iterator[ServerSentEvent]:
        """The messages of the live stream at ``path`` after id ``after``, through its end message.

        Reconnects after a drop with ``Last-Event-ID``, none seen twice: two messages may share an id (a
        step's start and outcome, stored as one row, share its seq), so when the last message given was a
        ``step_started`` a reconnect resumes just before its id, and the messages of that id already given
        (told apart by their event) are skipped, as is any message whose id is below the last. The first
        connection failing is an error at once (no server there); once connected, drops and 502/503/504
        are retried as :attr:`reconnect` says.
        """
        import httpx
        from httpx_sse import connect_sse

        timeout = httpx.Timeout(30, read=None)  # a live stream may be quiet for long: never a read timeout
        last = after
        seen: set[str] = set()  # the events given with id ``last`` on this stream
        latest = ""  # the event of the last message given
        connected = False
        waits: Iterator[float] | None = None
        dropped_at = 0.0
        while True:
            headers = {"Last-Event-ID": str(last - 1 if latest == "step_started" else last)}
            problem: Exception
            try:
                with connect_sse(self._http, "GET", path, headers=headers, timeout=timeout) as source:
                    response = source.response
                    if response.status_code != 200:
                        response.read()
                        if not (connected and response.status_code in _RETRIED_STATUSES):
                            self._raise(response)
                    connected = True
                    for message in source.iter_sse() if response.status_code == 200 else ():
                        if message.event == "end":
                            yield message
                            return
                        if not message.data:  # a keep-alive comment; httpx-sse repeats the last id on it
                            continue
                        if message.id:
                            seq = int(message.id)
                            if seq < last or (seq == last and message.event in seen):
                                continue
                            if seq != last:
                                last, seen = seq, set()
                            seen.add(message.event)
                            latest, waits = message.event, None
                        yield message
                problem = TaskloomError(f"the stream ended without its end event (HTTP {response.status_code})")
            except httpx.TransportError as error:
                if not connected and isinstance(error, httpx.ConnectError):
                    raise self._unreachable(error) from None
                problem = error
            now = time.monotonic()
            if waits is None:
                waits, dropped_at = self.reconnect.waits(), now
            if now - dropped_at > self.reconnect.give_up_after:
                raise self._unreachable(problem)
            wait = next(waits)
            log.info("stream %s dropped (%s); reconnecting after id %d in %.2fs", path, problem, last, wait)
            time.sleep(wait)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        if response.status_code >= 400:
            self._raise(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _unreachable(self, error: Exception) -> TaskloomError:
        if "CERTIFICATE_VERIFY_FAILED" in str(error):
            return TaskloomError(
                f"the taskloom server at {self.url} sent a certificate this client does not trust ({error}); "
                "if a private CA signed it, set TASKLOOM_CA_BUNDLE to that CA's PEM file"
            )
        return TaskloomError(f"cannot reach the taskloom server at {self.url} ({error}); is `taskloom server` running?")

    def _raise(self, response: Any) -> None:
        try:
            body = response.json()
            message, kind = str(body["error"]), body.get("type")
        except (ValueError, KeyError, TypeError):
            message, kind = (response.text or response.reason_phrase)[:500], None
        status = response.status_code
        if status == 401:
            raise TaskloomError(f"the server at {self.url} refused the API token: {message}")
        error_class = getattr(errors, kind, None) if isinstance(kind, str) else None
        if not (isinstance(error_class, type) and issubclass(error_class, TaskloomError)):
            error_class = _ERROR_OF_STATUS.get(status, TaskloomError)
        if status >= 500:
            message = f"the server at {self.url} failed ({status}): {message}"
        raise error_class(message)


def _execution_path(execution_id: str, action: str | None = None) -> str:
    path = f"/executions/{quote(execution_id, safe='')}"
    return f"{path}/{action}" if action else path


def _instance_path(instance_id: str, action: str | None = None) -> str:
    path = f"/instances/{quote(instance_id, safe='')}"
    return f"{path}/{action}" if action else path


def _secret_path(name: str) -> str:
    return f"/secrets/{quote(name, safe='')}"


def event_from_json(view: dict[str, Any], execution_id: str) -> Event:
    """An :class:`~taskloom.events.Event` from its JSON view, for printers that take events.

    ``raw_value`` is None (a client never unpickles what a server sends): read the value's JSON view
    from ``view["value"]``.
    """
    return Event(
        seq=int(view["seq"]),
        execution_id=execution_id,
        type=EventType(view["type"]),
        timestamp=datetime.fromisoformat(view["timestamp"]),
        step_id=view.get("step_id"),
        name=view.get("name"),
        raw_value=None,
        data=dict(view.get("data") or {}),
    )
