"""``taskloom server``: the HTTP API over the store, for clients, the CLI's ``--server`` and the dashboard.

- :mod:`~taskloom.server.app` builds the ASGI app (``create_app``) from the route modules;
- :mod:`~taskloom.server.auth` owns the API token and the bearer-token middleware;
- :mod:`~taskloom.server.http` holds what every route shares (state, strict JSON bodies, ``ApiError``);
- ``routes_*`` modules hold the routes with their OpenAPI description; :mod:`~taskloom.server.sse` the
  live event stream; :mod:`~taskloom.server.openapi` the document; :mod:`~taskloom.server.run` uvicorn.

Starlette and uvicorn (the ``server`` extra) are imported only by the modules that need them, so
``taskloom.server.auth`` stays importable for clients without them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from taskloom.server.app import create_app

        return create_app
    if name == "serve":
        from taskloom.server.run import serve

        return serve
    raise AttributeError(f"module 'taskloom.server' has no attribute {name!r}")
