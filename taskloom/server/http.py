"""JSON in and out, shared by every route module: the server's state, strict bodies, errors as JSON.

Request bodies are JSON only and parsed strictly (no ``NaN``/``Infinity``, UTF-8, bounded size); they
are never unpickled. Responses are rendered so that any value the store holds becomes valid JSON.
A route signals a client error by raising :class:`ApiError`; :mod:`taskloom.server.app` turns it, and
taskloom's own errors, into ``{"error": "...", "type": "..."}`` with the right status code.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskloom import serde
from taskloom.secret_store import SecretStore, load_key
from taskloom.store.base import ExecutionRecord, Store
from taskloom.workflow import Workflow

T = TypeVar("T")
Endpoint = Callable[[Request], Awaitable[Response]]

#: the largest request body accepted (a workflow input or a secret value); larger gets 413
MAX_BODY_BYTES = 10 * 1024 * 1024
#: longest execution id, workflow name or filter the server passes to the store
MAX_TEXT_LENGTH = 500


class ApiError(Exception):
    """A request the server refuses: ``status`` and a message that names the field or id at fault.

    Internal to the HTTP layer (it never leaves the server; clients see the JSON body). ``kind`` names
    the taskloom error a client should raise for it (see :mod:`taskloom.client`).
    """

    def __init__(
        self, status: int, message: str, *, kind: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = dict(headers or {})


@dataclass
class ServerState:
    """What every route needs: the store, the workflows the server may queue, the token, the secret key.

    ``workflows`` come only from the modules named on ``taskloom server``'s command line: a request never
    makes the server import code. ``secret_key`` is loaded on first use when not given.
    """

    store: Store
    workflows: Mapping[str, Workflow[Any]]
    modules: tuple[str, ...]
    token: str
    secret_key: bytes | None = None
    poll_seconds: float = 0.1
    keepalive_seconds: float = 15.0
    _secrets: SecretStore | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def secret_store(self) -> SecretStore:
        with self._lock:
            if self._secrets is None:
                self._secrets = SecretStore(self.store, self.secret_key or load_key())
            return self._secrets

    def resolve_workflow(self, ref: str) -> Workflow[Any]:
        """The workflow ``ref`` names: a workflow name, or ``module:qualname`` of one this server loaded."""
        found = self.workflows.get(ref)
        if found is not None:
            return found
        for wf in self.workflows.values():
            if wf.target == ref:
                return wf
        module_name, sep, attr = ref.partition(":")
        if sep and module_name in self.modules and module_name in sys.modules:
            value: Any = sys.modules[module_name]
            for part in attr.split("."):
                value = getattr(value, part, None)
            if isinstance(value, Workflow) and self.workflows.get(value.name) is value:
                return value
        known = ", ".join(sorted(self.workflows)[:20]) or "none"
        raise ApiError(
            404,
            f"unknown workflow {ref!r}: this server knows the workflows of its modules "
            f"({', '.join(self.modules) or 'none given'}): {known}; start it with the module that defines "
            "the workflow: taskloom server MODULE",
            kind="WorkflowError",
        )


def state(request: Request) -> ServerState:
    server_state: ServerState = request.app.state.taskloom
    return server_state


def route(path: str, **endpoints: Endpoint) -> Route:
    """One route for ``path`` with an endpoint per method (``get=...``, ``post=...``).

    One route per path (not one per method) is what makes a 405 list every allowed method.
    """
    by_method = {method.upper(): endpoint for method, endpoint in endpoints.items()}
    if "GET" in by_method:
        by_method.setdefault("HEAD", by_method["GET"])

    async def dispatch(request: Request) -> Response:
        return await by_method[request.method](request)

    return Route(path, dispatch, methods=sorted(by_method), name=path)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking store call in the thread pool, so the event loop never waits on the database."""
    return await run_in_threadpool(fn, *args)


# -- responses ---------------------------------------------------------------------------------------
class JSONResponse(Response):
    """Always valid JSON: ASCII-escaped (lone surrogates survive), non-finite floats as strings."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        except ValueError:
            text = json.dumps(_finite(content), ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        return text.encode("ascii")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def error_body(message: str, kind: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if kind:
        body["type"] = kind
    return body


def timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def value_view(blob: bytes | None) -> Any:
    """The JSON view of a stored value; one this process cannot decode is described, not raised."""
    try:
        return serde.json_view(serde.loads(blob))
    except Exception as error:  # a class that no longer exists here, or a value too deep to render
        return f"<undecodable: {type(error).__name__}: {error}>"


def execution_view(record: ExecutionRecord, *, values: Collection[str] = ("input", "output")) -> dict[str, Any]:
    view: dict[str, Any] = {
        "execution_id": record.id,
        "workflow": record.workflow,
        "target": record.target,
        "status": record.status,
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
    }
    if "input" in values:
        view["input"] = value_view(record.input)
    if "output" in values:
        view["output"] = value_view(record.output)
    return view


# -- requests ----------------------------------------------------------------------------------------
async def read_json_object(
    request: Request, *, fields: Collection[str], required: Collection[str] = ()
) -> dict[str, Any]:
    """The request body as a JSON object with only ``fields`` (``required`` among them); else 413/415/422."""
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(415, f"the request body must be JSON (Content-Type: application/json), got {content_type!r}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is {declared} bytes; the limit is {MAX_BODY_BYTES}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is larger than the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if required:
            raise ApiError(422, f"the request body must be a JSON object with field {sorted(required)[0]!r}")
        return {}
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(422, f"the request body must be a JSON object, got {_json_type(body)}")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r} in the request body; allowed: {', '.join(sorted(fields))}")
    for name in sorted(required):
        if name not in body:
            raise ApiError(422, f"field {name!r} is required in the request body")
    return body


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, numbers that fit; errors are 422 with the reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(422, f"the request body is not UTF-8 ({error.reason} at byte {error.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise ApiError(422, f"the request body is not valid JSON ({error.msg} at position {error.pos})") from None
    except RecursionError:
        raise ApiError(422, "the request body is nested too deeply") from None
    except ValueError as error:
        raise ApiError(422, f"the request body is not valid JSON ({error})") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large for a float")
    return value


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def clean_text(value: str, what: str, *, status: int = 422) -> str:
    """``value`` if every store can hold it (no NUL or lone surrogate, not too long); else ``status``."""
    if len(value) > MAX_TEXT_LENGTH:
        raise ApiError(status, f"{what} is {len(value)} characters; the limit is {MAX_TEXT_LENGTH}")
    if "\x00" in value:
        raise ApiError(status, f"{what} {value!r} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(status, f"{what} {value!r} is not valid Unicode text") from None
    return value


#: the longest event or update seq accepted in ``Last-Event-ID`` (18 digits always fit a 64-bit seq)
MAX_SEQ_DIGITS = 18


def last_event_id(request: Request, after: int, what: str) -> int:
    """The seq to continue after: the larger of ``after`` and a ``Last-Event-ID`` header, if one was sent.

    Only ASCII digits are a seq: ``str.isdigit`` also accepts ``"²"`` and other Unicode digits that
    ``int()`` refuses, which must be a 400 naming the header, not a 500. ``what`` names the seq
    (``"an event seq"``) in the message.
    """
    text = request.headers.get("last-event-id", "").strip()
    if not text:
        return after
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_SEQ_DIGITS:
        raise ApiError(
            400,
            f"header 'Last-Event-ID' must be {what}: 1 to {MAX_SEQ_DIGITS} ASCII digits, got {text[:40]!r}",
        )
    return max(after, int(text))


def query_int(request: Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise ApiError(422, f"query parameter {name!r} must be an integer, got {text[:40]!r}") from None
    if not minimum <= value <= maximum:
        raise ApiError(422, f"query parameter {name!r} must be between {minimum} and {maximum}, got {value}")
    return value
