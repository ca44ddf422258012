"""``taskloom server``: the HTTP API over the store, for clients, the CLI's ``--server`` and the dashboard.

- :mod:`~taskloom.server.app` builds the FastAPI app (``create_app``) from the route modules' routers;
- :mod:`~taskloom.server.auth` owns the API token and the bearer-token middleware;
- :mod:`~taskloom.server.models` holds the pydantic request and response models (validation and the
  OpenAPI document are generated from them);
- :mod:`~taskloom.server.http` holds what every route shares (state, strict JSON bodies, ``ApiError``);
- ``routes_*`` modules hold the routes; :mod:`~taskloom.server.sse` the live event streams;
  :mod:`~taskloom.server.run` runs uvicorn.

FastAPI, pydantic and uvicorn (the ``server`` extra) are imported only by the modules that need them, so
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
