"""Named API tokens with a role each: ``read``, ``operate`` or ``admin``.

A dashboard viewer needs to read executions, not cancel them or list secret names, so each token a
server accepts has a role, and every route needs one (:func:`required_role`):

- ``read``: list executions, their status, events and live streams, workers, queues, schedules, the
  dashboard's data;
- ``operate``: all of ``read``, and start, resume, cancel, send messages, start and stop instances, pause
  and resume schedules;
- ``admin``: all of ``operate``, and secrets and tokens.

Tokens are made with ``taskloom tokens create NAME --role ROLE`` (or ``POST /tokens``), shown once, and
stored as a SHA-256 digest only: a token is 256 random bits, so a fast hash cannot be brute-forced and a
stolen database holds no usable token. The server's single token (``TASKLOOM_API_TOKEN`` or the
``api.token`` file) keeps working as ``admin``. Revoking takes effect on the next request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskloom.errors import TaskloomError

if TYPE_CHECKING:
    from taskloom.store.base import Store

__all__ = [
    "ROLES",
    "ApiTokenRecord",
    "TokenError",
    "TokenTable",
    "digest",
    "required_role",
    "role_allows",
    "token_view",
]

#: the roles, weakest first: each includes the ones before it
ROLES = ("read", "operate", "admin")
#: paths (and their sub-paths) that only ``admin`` may use, whatever the method
ADMIN_PATHS = ("/secrets", "/tokens")
#: methods that change nothing
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: a token's last use is written at most this often, so reads do not turn into a write per request
LAST_USED_EVERY_SECONDS = 60.0
TOKEN_PREFIX = "tlk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class TokenError(TaskloomError):
    """A token that cannot be made or revoked: a bad name or role, a name in use, no such token."""


@dataclass(frozen=True, slots=True)
class ApiTokenRecord:
    """One named token, without the token itself (only its digest is stored)."""

    name: str
    role: str
    created_at: float
    revoked_at: float | None
    last_used_at: float | None


def digest(token: str) -> str:
    """The stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def required_role(method: str, path: str) -> str:
    """The role a request needs: ``admin`` under :data:`ADMIN_PATHS`, ``read`` to read, else ``operate``."""
    if any(path == prefix or path.startswith(prefix + "/") for prefix in ADMIN_PATHS):
        return "admin"
    return "read" if method.upper() in READ_METHODS else "operate"


def role_allows(role: str, needed: str) -> bool:
    """True if ``role`` is ``needed`` or stronger."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise TokenError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise TokenError(
            f"token name {name!r} must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


class TokenTable:
    """The ``api_tokens`` table of a store (migration 013), through the store's own transactions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        from taskloom.store.statements import Statements  # made per call: the server builds a table at start

        return Statements(self._store).run(sql, params)

    def create(self, name: str, role: str) -> str:
        """Make a token named ``name`` with ``role`` and return it: the only time it is ever seen."""
        check_name(name)
        check_role(role)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        taken = self._run(
            "INSERT INTO api_tokens (name, role, digest, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING RETURNING name",
            (name, role, digest(token), time.time()),
        )
        if not taken:
            raise TokenError(f"a token named {name!r} exists already (revoke it first, or choose another name)")
        return token

    def list(self) -> list[ApiTokenRecord]:
        rows = self._run("SELECT name, role, created_at, revoked_at, last_used_at FROM api_tokens ORDER BY name")
        return [ApiTokenRecord(str(r[0]), str(r[1]), float(r[2]), _float(r[3]), _float(r[4])) for r in rows]

    def revoke(self, name: str) -> None:
        """Revoke the token ``name``; its row stays, marked, so ``list`` shows when it was revoked."""
        done = self._run(
            "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL RETURNING name",
            (time.time(), name),
        )
        if not done:
            known = self._run("SELECT revoked_at FROM api_tokens WHERE name = ?", (name,))
            if known:
                raise TokenError(f"the token {name!r} is revoked already")
            raise TokenError(f"no token named {name!r}")

    def role_of(self, token: str) -> tuple[str, str] | None:
        """``(name, role)`` of a live token, or None: unknown or revoked. Notes its use (at most once a minute)."""
        rows = self._run(
            "SELECT name, role, last_used_at FROM api_tokens WHERE digest = ? AND revoked_at IS NULL",
            (digest(token),),
        )
        if not rows:
            return None
        name, role, last_used = rows[0]
        now = time.time()
        if last_used is None or now - float(last_used) > LAST_USED_EVERY_SECONDS:
            self._run("UPDATE api_tokens SET last_used_at = ? WHERE name = ?", (now, name))
        return str(name), str(role)


def token_view(record: ApiTokenRecord) -> dict[str, Any]:
    """A token's JSON shape, the same for ``GET /tokens`` and ``taskloom tokens list --json``."""
    from taskloom.views import timestamp

    def when(seconds: float | None) -> str | None:
        return None if seconds is None else timestamp(seconds)

    return {
        "name": record.name,
        "role": record.role,
        "created_at": timestamp(record.created_at),
        "revoked_at": when(record.revoked_at),
        "last_used_at": when(record.last_used_at),
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
