"""Entry point of ``taskloom server [MODULE...]``: load the token, key and workflows, then run uvicorn.

The server imports only the modules named on its command line, to know which workflows it may queue
(by name or ``module:qualname``); it never runs them (workers do) and never imports code a request names.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from taskloom.errors import TaskloomError
from taskloom.exposure import database_url_warning, server_bind_warning
from taskloom.secret_store import load_key
from taskloom.server.auth import load_api_token
from taskloom.settings import Settings
from taskloom.store import describe_store

#: seconds uvicorn waits on SIGTERM for open requests (live streams) before closing them
GRACEFUL_SHUTDOWN_SECONDS = 5


def serve(
    modules: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Serve the API until SIGINT/SIGTERM. On the first start, create the token file and print the token.

    With ``tls_cert`` and ``tls_key`` (PEM files) it serves HTTPS; without them, bound beyond loopback,
    it warns that the token crosses the network in clear.
    """
    tls = _check_tls_files(tls_cert, tls_key)
    try:
        import uvicorn
    except ImportError as error:
        raise TaskloomError(
            f"the server needs its extra ({error}); install it with: pip install 'taskloom[server]'"
        ) from None
    from taskloom.dashboard.routes import dashboard_routes
    from taskloom.discovery import find_workflows, import_modules
    from taskloom.server.app import create_app

    settings = Settings.from_env()
    store = describe_store(settings.database_url)  # before the app opens it: "a new, empty file" is news
    token = load_api_token(settings)
    workflows = find_workflows(import_modules(modules)) if modules else {}
    app = create_app(
        token=token.value,
        workflows=workflows,
        modules=modules,
        secret_key=load_key(settings),
        extra_routes=dashboard_routes(),
    )
    if token.created:
        print(f"taskloom server: created the API token file {token.source} (mode 0600). The token, shown once:")
        print(f"    {token.value}")
    else:
        print(f"taskloom server: API token from {token.source}")
    print(f"taskloom server: {store}")
    names = ", ".join(sorted(workflows)) or "none (give MODULE... to start workflows over HTTP)"
    print(f"taskloom server: workflows: {names}")
    scheme = "https" if tls else "http"
    print(f"taskloom server: {scheme}://{host}:{port}  (dashboard: /, API description: /openapi.json, /docs)")
    for warning in (server_bind_warning(host, tls=tls), database_url_warning(settings.database_url)):
        if warning is not None:
            print(warning if warning.startswith("taskloom server") else f"taskloom server: {warning}")
    sys.stdout.flush()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )


def _check_tls_files(cert: str | None, key: str | None) -> bool:
    """True when both TLS files are given and load together; a clear error for one without the other or a
    bad pair, before the server prints that it listens (uvicorn would fail later with a bare SSL error)."""
    if cert is None and key is None:
        return False
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise TaskloomError(f"{given} needs {missing} too: HTTPS takes a certificate and its private key")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise TaskloomError(
            f"--tls-cert {cert!r} and --tls-key {key!r} do not load as a PEM certificate and its key: {error}"
        ) from None
    return True
