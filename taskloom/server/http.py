"""What every route shares: the server's state, strict JSON bodies, JSON responses, ``ApiError``.

Request bodies are JSON only and decoded strictly (UTF-8, no ``NaN``/``Infinity``, bounded size): the
route class :class:`StrictJSONRoute` gives FastAPI a request whose ``json()`` is strict, then FastAPI
validates the result against the route's pydantic model (:mod:`taskloom.server.models`). Bodies are
never unpickled. Responses are rendered so that any value the store holds becomes valid JSON. A route
refuses a request by raising :class:`ApiError`; :mod:`taskloom.server.app` turns it, and taskloom's own
errors, into ``{"error": "...", "type": "..."}`` with the right status code.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi.routing import APIRoute
from starlette import responses
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from taskloom.secret_store import SecretStore, load_key
from taskloom.store.base import Store
from taskloom.workflow import Workflow

T = TypeVar("T")

#: the largest request body accepted (a workflow input or a secret value); larger gets 413
MAX_BODY_BYTES = 10 * 1024 * 1024


class ApiError(HTTPException):
    """A request the server refuses: ``status`` and a message that names the field or id at fault.

    Internal to the HTTP layer (it never leaves the server; clients see the JSON body). ``kind`` names
    the taskloom error a client should raise for it (see :mod:`taskloom.client`). An ``HTTPException``
    so that FastAPI passes it on unchanged when it is raised while the body is read.
    """

    def __init__(
        self, status: int, message: str, *, kind: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, message, dict(headers or {}))
        self.status = status
        self.message = message
        self.kind = kind


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
    """The server's state: a FastAPI dependency of every route (``Depends(state)``)."""
    server_state: ServerState = request.app.state.taskloom
    return server_state


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking store call in the thread pool, so the event loop never waits on the database."""
    return await run_in_threadpool(fn, *args)


# -- requests ----------------------------------------------------------------------------------------
class StrictJSONRequest(Request):
    """A request whose body must be JSON (415), at most :data:`MAX_BODY_BYTES` (413), and strict JSON."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            content_type = self.headers.get("content-type", "application/json").split(";")[0].strip().lower()
            if content_type and content_type != "application/json" and not content_type.endswith("+json"):
                raise ApiError(
                    415, f"the request body must be JSON (Content-Type: application/json), got {content_type!r}"
                )
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise ApiError(413, f"the request body is {declared} bytes; the limit is {MAX_BODY_BYTES}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ApiError(413, f"the request body is larger than the limit of {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = _strict_json(await self.body())
        return self._json


def _strict_json(raw: bytes) -> Any:
    """The standard library's decoder, told to refuse what JSON has not (NaN, Infinity, 1e999)."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except UnicodeDecodeError as error:
        raise ApiError(422, f"the request body is not UTF-8 ({error.reason} at byte {error.start})") from None
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


class StrictJSONRoute(APIRoute):
    """FastAPI's route, reading bodies through :class:`StrictJSONRequest` (FastAPI's documented hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


# -- responses ---------------------------------------------------------------------------------------
class JSONResponse(responses.JSONResponse):
    """Always valid JSON: ASCII-escaped (lone surrogates survive), non-finite floats as strings."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("ascii")


def dumps(content: Any) -> str:
    """``content`` as compact ASCII JSON; a non-finite float becomes its ``str``."""
    try:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(content), ensure_ascii=True, allow_nan=False, separators=(",", ":"))


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
