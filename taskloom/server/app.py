"""The ASGI app: routes from the route modules, bearer auth around them, every error as JSON.

Route modules each expose ``routes`` (Starlette routes) and ``openapi_paths`` (their OpenAPI
description); :data:`ROUTE_MODULES` lists them, and the app and its OpenAPI document are built from that
one list, so a route cannot be served without being described.

Errors never reach a client as a traceback: :class:`~taskloom.server.http.ApiError` and taskloom's own
errors become ``{"error": ..., "type": ...}`` with 404/409/422; anything unexpected is logged with its
traceback and answered with a JSON 500 that says only that.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from taskloom.errors import (
    ExecutionNotFoundError,
    SecretNotFoundError,
    SecretStoreError,
    SerializationError,
    StoreError,
    TaskError,
    TaskloomError,
    WorkflowError,
)
from taskloom.server import routes_executions, routes_instances, routes_secrets
from taskloom.server.auth import BearerAuth
from taskloom.server.http import ApiError, JSONResponse, ServerState, error_body, route
from taskloom.server.openapi import build_openapi, docs_page
from taskloom.store import Store, default_store
from taskloom.workflow import Workflow

log = logging.getLogger("taskloom.server")

#: Every module of routes, in the order they are described. Each has ``routes`` and ``openapi_paths``.
#: Task-instance routes (start/stop/cancel instances for the remote backend) go in
#: ``taskloom/server/routes_instances.py`` with the same two attributes, and are added here.
ROUTE_MODULES: tuple[ModuleType, ...] = (routes_executions, routes_secrets, routes_instances)


def create_app(
    *,
    token: str,
    store: Store | None = None,
    workflows: Mapping[str, Workflow[Any]] | None = None,
    modules: Sequence[str] = (),
    secret_key: bytes | None = None,
    poll_seconds: float = 0.1,
    route_modules: Sequence[ModuleType] = ROUTE_MODULES,
) -> Starlette:
    """The app. ``workflows`` (by name) are those it may queue, found in ``modules``; ``token`` guards it.

    ``store`` defaults to :func:`taskloom.store.default_store`; ``secret_key`` to
    :func:`taskloom.secret_store.load_key` on the first secret request.
    """
    server = ServerState(
        store=store or default_store(),
        workflows=dict(workflows or {}),
        modules=tuple(modules),
        token=token,
        secret_key=secret_key,
        poll_seconds=poll_seconds,
    )
    document = build_openapi([m.openapi_paths for m in route_modules], version=_version())
    page = docs_page(document)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    routes: list[BaseRoute] = [
        route("/health", get=health),
        route("/openapi.json", get=openapi),
        route("/docs", get=docs),
    ]
    for module in route_modules:
        routes.extend(module.routes)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BearerAuth, token=token)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            TaskloomError: _taskloom_error,
            Exception: _unexpected_error,
        },
    )
    app.state.taskloom = server
    app.state.openapi = document
    return app


def _version() -> str:
    try:
        return version("taskloom")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
        return "0"


# -- errors as JSON ----------------------------------------------------------------------------------
async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return JSONResponse(error_body(error.message, error.kind), status_code=error.status, headers=error.headers)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        message = f"no route {request.url.path!r}; see /docs"
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path!r}; allowed: {allowed}"
    else:
        message = error.detail
    return JSONResponse(error_body(message), status_code=error.status_code, headers=error.headers)


#: most specific first: the first match decides the status
_STATUS_OF: tuple[tuple[type[TaskloomError], int], ...] = (
    (ExecutionNotFoundError, 404),
    (SecretNotFoundError, 404),
    (SerializationError, 422),
    (WorkflowError, 409),
    (TaskError, 422),
)


async def _taskloom_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, TaskloomError)
    server: ServerState = request.app.state.taskloom
    if isinstance(error, StoreError):
        log.error("store error on %s %s: %s", request.method, request.url.path, error)
        return JSONResponse(error_body("the store is unavailable; see the server log", "StoreError"), status_code=503)
    if isinstance(error, SecretStoreError):
        # A configuration problem (key missing or wrong): the message names the setting, never the key.
        log.error("secret store error on %s %s: %s", request.method, request.url.path, error)
        return JSONResponse(error_body(str(error), "SecretStoreError"), status_code=500)
    status = next((code for kind, code in _STATUS_OF if isinstance(error, kind)), 409)
    # The store's URL may carry a database password: never echo it.
    message = str(error).replace(server.store.url, "the store")
    return JSONResponse(error_body(message, type(error).__name__), status_code=status)


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse(error_body("internal server error; the server log has the details"), status_code=500)
