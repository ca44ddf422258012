"""The dashboard: a small static app served at ``/`` by ``taskloom server``, reading the HTTP API.

The files in ``static/``: ``index.html``, ``app.js`` (the pages), ``graph.js`` (a Graph drawn as SVG),
``related.js`` (an execution's messages and children, the schedules page) and ``app.css``, written by
hand, with no build step, no framework and nothing loaded from elsewhere, so the page works offline.
They hold no data: they are public (:data:`ASSETS` joins :data:`taskloom.server.auth.PUBLIC_PATHS`),
and every data call the page makes sends ``Authorization: Bearer`` with the token the user typed into
its login form. The page keeps that token in the browser tab's ``sessionStorage`` only: never in a URL, a
cookie or ``localStorage``. Live views read the API's Server-Sent Events through ``fetch`` (a browser's
``EventSource`` cannot send the header).

This module names the files and imports no web framework, so that :mod:`taskloom.server.auth` can list
them; :mod:`taskloom.dashboard.routes` serves them.
"""

from __future__ import annotations

__all__ = ["ASSETS", "STATIC"]

from importlib import resources
from importlib.resources.abc import Traversable

#: the folder of the page's files, inside the installed package
STATIC: Traversable = resources.files(__name__) / "static"

#: URL path -> (file in :data:`STATIC`, media type): everything the dashboard serves, all public
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/graph.js": ("graph.js", "text/javascript; charset=utf-8"),
    "/dashboard/related.js": ("related.js", "text/javascript; charset=utf-8"),
    "/dashboard/app.css": ("app.css", "text/css; charset=utf-8"),
}
