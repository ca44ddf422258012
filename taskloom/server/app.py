"""The ASGI app: FastAPI with the route modules' routers, bearer auth around them, every error as JSON.

Each route module exposes a FastAPI ``router``; :data:`ROUTERS` lists them. Request and response bodies
are the pydantic models of :mod:`taskloom.server.models`, so FastAPI validates requests and generates the
OpenAPI document (``/openapi.json``) and the interactive page (``/docs``) from the same code that serves.

Auth is :class:`~taskloom.server.auth.BearerAuth`, an ASGI middleware around the whole app: a request
without the token is refused before routing, so it reaches no route. The routers also declare the bearer
scheme (``HTTPBearer``) so that the document says which operations need the token and ``/docs`` offers
to send it.

Errors never reach a client as a traceback: every refusal is ``{"error": ..., "type": ...}``. A request
that does not fit a model gets 422 naming the field (400 for a bad header, 404 for a path that can name
nothing); :class:`~taskloom.server.http.ApiError` and taskloom's own errors get 404/409/422; anything
unexpected is logged with its traceback and answered with a JSON 500 that says only that.

The dashboard (or anything else served by the same process) goes in through ``extra_routes``: Starlette
routes or mounts added after the API's, behind the same auth, e.g.
``create_app(..., extra_routes=[Mount("/", app=dashboard)])``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

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
from taskloom.server import (
    routes_executions,
    routes_instances,
    routes_queues,
    routes_relations,
    routes_schedules,
    routes_secrets,
    routes_tokens,
    routes_workers,
)
from taskloom.server.auth import DOCS_ASSETS, DOCS_PATH, PUBLIC_PATHS, BearerAuth
from taskloom.server.http import ApiError, JSONResponse, ServerState, error_body
from taskloom.server.models import Health
from taskloom.store import Store, default_store
from taskloom.tokens import TokenTable
from taskloom.workflow import Workflow

log = logging.getLogger("taskloom.server")

TITLE = "taskloom"
DESCRIPTION = (
    "Start, follow, resume and cancel durable workflow executions, queue and follow task instances, and "
    "manage secrets. Workers (`taskloom worker MODULE`) run what the server queues. Every route but "
    f"{', '.join(sorted(PUBLIC_PATHS))} needs `Authorization: Bearer <token>` (TASKLOOM_API_TOKEN, or the "
    "api.token file the server creates on first start): use **Authorize** to send it from this page. "
    "Request bodies are JSON only."
)

#: Every router of API routes, in the order they are documented.
ROUTERS: tuple[APIRouter, ...] = (
    routes_executions.router,
    routes_relations.router,
    routes_schedules.router,
    routes_secrets.router,
    routes_tokens.router,
    routes_instances.router,
    routes_workers.router,
    routes_queues.router,
)

#: Documents the bearer scheme on every protected operation; BearerAuth does the checking.
BEARER = HTTPBearer(scheme_name="bearerAuth", auto_error=False, description="the server's API token")


def create_app(
    *,
    token: str,
    store: Store | None = None,
    workflows: Mapping[str, Workflow[Any]] | None = None,
    modules: Sequence[str] = (),
    secret_key: bytes | None = None,
    poll_seconds: float = 0.1,
    routers: Sequence[APIRouter] = ROUTERS,
    extra_routes: Sequence[BaseRoute] = (),
) -> FastAPI:
    """The app. ``workflows`` (by name) are those it may queue, found in ``modules``; ``token`` guards it.

    ``store`` defaults to :func:`taskloom.store.default_store`; ``secret_key`` to
    :func:`taskloom.secret_store.load_key` on the first secret request. ``extra_routes`` (the dashboard)
    are served after the API's routes, behind the same token.
    """
    server = ServerState(
        store=store or default_store(),
        workflows=dict(workflows or {}),
        modules=tuple(modules),
        token=token,
        secret_key=secret_key,
        poll_seconds=poll_seconds,
    )
    app = FastAPI(
        title=TITLE,
        version=_version(),
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,  # served below, from files in the package rather than a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        default_response_class=JSONResponse,
        strict_content_type=False,  # a body sent without Content-Type is read as JSON, as before
        middleware=[Middleware(BearerAuth, token=token, lookup=TokenTable(server.store).role_of)],
        exception_handlers={
            RequestValidationError: _invalid_request,
            ApiError: _api_error,
            HTTPException: _http_error,
            TaskloomError: _taskloom_error,
            Exception: _unexpected_error,
        },
    )

    @app.get("/health", operation_id="health", summary="Liveness check (no token needed)", tags=["server"])
    async def health() -> Health:
        return Health(status="ok")

    add_docs_page(app)

    for router in routers:
        app.include_router(router, dependencies=[Depends(BEARER)])
    app.router.routes.extend(extra_routes)
    app.state.taskloom = server
    app.state.served = served_routes(app, routers)
    return app


def served_routes(app: FastAPI, routers: Sequence[APIRouter]) -> list[Route]:
    """Every route the app serves, one per path and method set (FastAPI keeps included routers nested)."""
    routes = [*app.router.routes, *(route for router in routers for route in router.routes)]
    return [route for route in routes if isinstance(route, Route)]


def add_docs_page(app: FastAPI) -> None:
    """``/docs``: Swagger UI over ``/openapi.json``, with its script and style served from this process.

    FastAPI's own page loads them from a CDN; these come from the ``fastapi-offline`` package, so the
    page works on a machine without internet access and tells no third party who reads it.
    """
    assets = Path(fastapi_offline.__file__).parent / "static"
    title = f"{TITLE} API"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=title,
            swagger_js_url=DOCS_ASSETS["js"],
            swagger_css_url=DOCS_ASSETS["css"],
            swagger_favicon_url="data:,",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
        )

    @app.get(DOCS_ASSETS["js"], include_in_schema=False)
    async def docs_script() -> FileResponse:
        return FileResponse(assets / "swagger-ui-bundle.js", media_type="text/javascript")

    @app.get(DOCS_ASSETS["css"], include_in_schema=False)
    async def docs_style() -> FileResponse:
        return FileResponse(assets / "swagger-ui.css", media_type="text/css")


def _version() -> str:
    try:
        return version("taskloom")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
        return "0"


# -- errors as JSON ----------------------------------------------------------------------------------
#: where a request's part is named in messages, and the status when it is at fault
_PARTS = {"path": ("path parameter", 404), "query": ("query parameter", 422), "header": ("header", 400)}
_NOT_AN_OBJECT = {"model_type", "model_attributes_type", "dict_type"}


async def _invalid_request(request: Request, error: Exception) -> Response:
    """pydantic's first complaint as one sentence naming the field; never echoing the value sent."""
    assert isinstance(error, RequestValidationError)
    problems = list(error.errors())
    first = problems[0]
    where, status = _where(tuple(first["loc"]))
    kind = first["type"]
    if kind == "missing":
        message = f"{where} is required" + (": a JSON object" if where == "the request body" else "")
    elif kind == "extra_forbidden":
        message = f"unknown {where}"
    elif kind in _NOT_AN_OBJECT:
        message = f"{where} must be a JSON object"
    else:
        message = f"{where}: {first['msg']}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return JSONResponse(error_body(message), status_code=status)


def _where(loc: tuple[Any, ...]) -> tuple[str, int]:
    """``("body", "instances", 0, "target")`` as ``"field 'target' of instances[0]"``, and the status."""
    source, *path = loc
    if source in _PARTS:
        part, status = _PARTS[source]
        return f"{part} {path[0]!r}" if path else part, status
    if not path:
        return "the request body", 422
    *container, last = path
    if isinstance(last, int):
        return _dotted(path), 422
    return f"field {last!r} of {_dotted(container) or 'the request body'}", 422


def _dotted(path: Sequence[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return JSONResponse(error_body(error.message, error.kind), status_code=error.status, headers=error.headers)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        message = f"no route {request.url.path!r}; see /docs"
    elif error.status_code == 405:
        allowed = _allowed_methods(request)
        message = f"{request.method} is not allowed on {request.url.path!r}; allowed: {allowed}"
        return JSONResponse(error_body(message), status_code=405, headers={"Allow": allowed})
    else:
        message = str(error.detail)
    return JSONResponse(error_body(message), status_code=error.status_code, headers=error.headers)


def _allowed_methods(request: Request) -> str:
    """Every method of every route on this path (FastAPI has a route per method, and its 405 names one)."""
    path = request.url.path
    served: list[Route] = request.app.state.served
    methods = {method for route in served if route.path_regex.match(path) for method in route.methods or ()}
    return ", ".join(sorted(methods))


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
