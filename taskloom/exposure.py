"""Warnings for a process that talks beyond this machine without TLS.

A ``taskloom server`` bound to ``0.0.0.0`` without ``--tls-cert`` sends the API token and every secret
name in clear over the network; a worker whose PostgreSQL URL names another host without
``sslmode=require`` (or ``verify-*``) does the same with the database password and every step's
output; a worker or client reaching a server over ``http://`` on another host sends its token in clear.
None of this is wrong on a trusted network, so taskloom warns at start instead of refusing: one line
that says what is exposed and how to fix it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qs, urlsplit

from taskloom.store import is_postgres_url

#: PostgreSQL ``sslmode`` values under which the connection is encrypted whatever the server offers
_ENCRYPTED_SSLMODES = frozenset({"require", "verify-ca", "verify-full"})


def is_loopback(host: str | None) -> bool:
    """True if ``host`` names this machine only: ``localhost``, 127.0.0.0/8, ``::1``, or a Unix socket.

    An empty host (libpq's default: the local Unix socket) and a path (a socket directory) are local too.
    """
    if not host or host.startswith("/"):
        return True
    host = host.strip("[]")
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve anywhere


def server_bind_warning(host: str, *, tls: bool) -> str | None:
    """The warning for ``taskloom server --host HOST`` without TLS, or None when there is nothing to say."""
    if tls or is_loopback(host):
        return None
    return (
        f"taskloom server: WARNING: listening on {host} without TLS: the API token and every request and "
        "response cross the network in clear. Give --tls-cert and --tls-key, or put a TLS proxy in front "
        "and bind to 127.0.0.1."
    )


def database_url_warning(url: str) -> str | None:
    """The warning for a PostgreSQL URL that reaches another host without an encrypting ``sslmode``."""
    if not is_postgres_url(url):
        return None  # SQLite: a local file
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    hosts = query.get("host") or [parts.hostname or ""]
    if all(is_loopback(h) for host in hosts for h in host.split(",")):
        return None
    sslmode = (query.get("sslmode") or ["prefer"])[-1].lower()
    if sslmode in _ENCRYPTED_SSLMODES:
        return None
    return (
        f"WARNING: the PostgreSQL store at {parts.hostname} is reached with sslmode={sslmode}: the connection "
        "may be unencrypted (the password, every step's input and output). Add ?sslmode=verify-full (or "
        "require) to TASKLOOM_DATABASE_URL."
    )


def server_url_warning(url: str) -> str | None:
    """The warning for a ``http://`` server URL on another host: the bearer token would travel in clear."""
    parts = urlsplit(url)
    if parts.scheme != "http" or is_loopback(parts.hostname):
        return None
    return (
        f"WARNING: the taskloom server {parts.hostname} is reached over http://: the API token and every "
        "request cross the network in clear. Serve it with --tls-cert/--tls-key and use https://."
    )
