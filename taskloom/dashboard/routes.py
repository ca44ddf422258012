"""The dashboard's routes: each of its files at its path, read once when the app is made.

Every response says how the browser may use it: a Content-Security-Policy that lets the page run only
its own script and talk only to this server (so data shown on it, a step's log line or an execution id,
can never run as code), no caching of an old page after an upgrade, and no referrer sent anywhere.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from taskloom.dashboard import ASSETS, STATIC

__all__ = ["SECURITY_HEADERS", "dashboard_routes"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def dashboard_routes() -> list[BaseRoute]:
    """One ``GET`` route per file of :data:`~taskloom.dashboard.ASSETS`, to give ``create_app(extra_routes=)``."""
    return [_file_route(path, name, media_type) for path, (name, media_type) in ASSETS.items()]


def _file_route(path: str, name: str, media_type: str) -> Route:
    content = (STATIC / name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(content, media_type=media_type, headers=SECURITY_HEADERS)

    return Route(path, serve, methods=["GET"], name=f"dashboard:{name}", include_in_schema=False)
