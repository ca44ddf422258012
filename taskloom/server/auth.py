"""Bearer-token auth: where the API token comes from, and the middleware that checks it.

The token is ``TASKLOOM_API_TOKEN`` when set, else the content of ``api.token`` in the taskloom home
folder (``TASKLOOM_HOME``, default ``.taskloom``). The server creates that file on its first start,
readable by its owner only (mode 0600, exclusive create, so it is never readable by others even for an
instant), and prints the token once; clients on the same machine read it from there.

Every route needs ``Authorization: Bearer <token>`` except :data:`PUBLIC_PATHS`: ``/health`` (for load
balancers and the test fixtures), ``/openapi.json``, ``/docs`` and the page's script and style,
which describe the API but hold no data and change nothing, and the dashboard's files (``/`` and its
script and style), which hold no data either: the page asks for the token and sends it on every call.
A request without the right token gets 401 with ``WWW-Authenticate: Bearer`` before any route runs, so
it cannot change anything. Tokens are compared with ``hmac.compare_digest``.

That token is ``admin``. Named tokens with a role each (:mod:`taskloom.tokens`: ``read``, ``operate``,
``admin``) are looked up in the store by digest; a token whose role does not reach the route's gets 403
naming both roles, again before any route runs.

This module imports no web framework, so :mod:`taskloom.client` can use :func:`load_api_token`.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskloom.dashboard import ASSETS as DASHBOARD_ASSETS
from taskloom.errors import TaskloomError
from taskloom.secret_store import _write_private
from taskloom.settings import Settings
from taskloom.tokens import required_role, role_allows

__all__ = [
    "DOCS_ASSETS",
    "DOCS_PATH",
    "PUBLIC_PATHS",
    "TOKEN_FILE_NAME",
    "ApiToken",
    "BearerAuth",
    "load_api_token",
    "token_matches",
]

log = logging.getLogger("taskloom.server")

TOKEN_FILE_NAME = "api.token"
#: the API's interactive page, and the files it loads (served by the app, not a CDN)
DOCS_PATH = "/docs"
DOCS_ASSETS = {"js": "/docs/swagger-ui-bundle.js", "css": "/docs/swagger-ui.css"}
#: routes served without a token: they reveal no data and change nothing
#: (and the dashboard's page, script and style: the data it shows comes from routes that need the token)
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", DOCS_PATH, *DOCS_ASSETS.values(), *DASHBOARD_ASSETS})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ApiToken:
    """The token and where it came from; ``created`` is True only on the start that wrote the file."""

    value: str
    source: str
    created: bool = False

    def __repr__(self) -> str:  # never show the token itself
        return f"ApiToken(source={self.source!r}, created={self.created})"


def load_api_token(settings: Settings | None = None, *, create: bool = True) -> ApiToken:
    """``TASKLOOM_API_TOKEN``, else the token file; with ``create`` a missing file is made (mode 0600).

    Without ``create`` (clients), a missing token is a :class:`~taskloom.errors.TaskloomError` that says
    where to find or set one.
    """
    settings = settings or Settings.from_env()
    if settings.api_token:
        return ApiToken(settings.api_token.strip(), "TASKLOOM_API_TOKEN")
    path = settings.home / TOKEN_FILE_NAME
    existing = _read_token_file(path)
    if existing is not None:
        return ApiToken(existing, str(path))
    if not create:
        raise TaskloomError(
            f"no API token: set TASKLOOM_API_TOKEN, or run where the server's token file {str(path)!r} is "
            "(the server creates it on its first start)"
        )
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, (token + "\n").encode("ascii"))
    except FileExistsError:  # another server won the race; use its token
        raced = _read_token_file(path)
        if raced is None:
            raise TaskloomError(f"the token file {str(path)!r} is empty; delete it or set TASKLOOM_API_TOKEN") from None
        return ApiToken(raced, str(path))
    except OSError as error:
        raise TaskloomError(
            f"cannot create the token file {str(path)!r}: {error}; set TASKLOOM_API_TOKEN instead"
        ) from None
    return ApiToken(token, str(path), created=True)


def _read_token_file(path: Path) -> str | None:
    try:
        text = path.read_text("utf-8").strip()
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise TaskloomError(f"cannot read the token file {str(path)!r}: {error}") from None
    if not text:
        raise TaskloomError(f"the token file {str(path)!r} is empty; delete it or set TASKLOOM_API_TOKEN")
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and os.name == "posix":
        log.warning("the token file %s is readable by others; run: chmod 600 %s", path, path)
    return text


def _presented(authorization: bytes | str | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header (any case of the scheme), or None."""
    if not authorization:
        return None
    raw = authorization.encode("utf-8") if isinstance(authorization, str) else authorization
    scheme, _, presented = raw.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return presented.strip()


def token_matches(authorization: bytes | str | None, token: str) -> bool:
    """True if the ``Authorization`` header is ``Bearer <token>``; compared in constant time."""
    presented = _presented(authorization)
    return presented is not None and hmac.compare_digest(presented, token.encode("utf-8"))


#: looks a presented token up among the named tokens: ``(name, role)``, or None if unknown or revoked
TokenLookup = Callable[[str], "tuple[str, str] | None"]
#: the name the server's single token (TASKLOOM_API_TOKEN or api.token) goes by in messages
SERVER_TOKEN_NAME = "server token"


class BearerAuth:
    """ASGI middleware: 401 for any HTTP request outside :data:`PUBLIC_PATHS` without a known token, and
    403 for a token whose role (:mod:`taskloom.tokens`) does not reach the route's.

    The server's single ``token`` is ``admin``; ``lookup`` finds the named tokens (in the store, so a
    revoked one is refused on its next request). The token's name and role are left in the request's
    ``state`` (``token_name``, ``token_role``) for the routes.
    """

    def __init__(self, app: ASGIApp, token: str, lookup: TokenLookup | None = None) -> None:
        if not token:
            raise ValueError("the API token must not be empty")
        self.app = app
        self.token = token
        self.lookup = lookup

    async def _identify(self, authorization: bytes | None) -> tuple[str, str] | None:
        presented = _presented(authorization)
        if presented is None:
            return None
        if hmac.compare_digest(presented, self.token.encode("utf-8")):
            return SERVER_TOKEN_NAME, "admin"
        if self.lookup is None or not presented or not presented.isascii():
            return None  # named tokens are ASCII (taskloom.tokens makes them)
        import anyio.to_thread  # starlette's own dependency; the lookup reads the store

        return await anyio.to_thread.run_sync(self.lookup, presented.decode("ascii"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        authorization: bytes | None = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value
                break
        identity = await self._identify(authorization)
        if identity is not None:
            token_name, role = identity
            needed = required_role(scope.get("method", "GET"), scope.get("path", ""))
            if role_allows(role, needed):
                scope.setdefault("state", {}).update(token_name=token_name, token_role=role)
                await self.app(scope, receive, send)
                return
            message = (
                f"the token {token_name!r} has the role {role!r}; {scope.get('method')} {scope.get('path')} "
                f"needs {needed!r} (taskloom tokens create NAME --role {needed})"
            )
            await _refuse(send, 403, message, "Forbidden", None)
            return
        if authorization:
            message, challenge = "the API token is wrong", 'Bearer realm="taskloom", error="invalid_token"'
        else:
            message, challenge = (
                "this route needs an API token: send the header 'Authorization: Bearer <token>' "
                "(the token is TASKLOOM_API_TOKEN or the server's api.token file)",
                'Bearer realm="taskloom"',
            )
        await _refuse(send, 401, message, "Unauthorized", challenge)


async def _refuse(send: Send, status: int, message: str, kind: str, challenge: str | None) -> None:
    body = json.dumps({"error": message, "type": kind}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
