"""Backends by name: which one runs task instances is chosen by ``TASKLOOM_BACKEND`` at ``instance()``.

The registry below is the one place that knows the names. Backend modules are imported only when first
used, so ``import taskloom`` does not pay for multiprocessing or a remote client.
"""

from __future__ import annotations

import atexit
import importlib
import os
import threading

from taskloom.backends.base import Backend
from taskloom.errors import BackendError
from taskloom.settings import Settings

#: ``TASKLOOM_BACKEND`` value -> module that defines ``create_backend() -> Backend``
BACKEND_MODULES: dict[str, str] = {
    "local": "taskloom.backends.local",
    "local-process": "taskloom.backends.process",
    "remote": "taskloom.backends.remote",
}

BACKEND_VARIABLE = "TASKLOOM_BACKEND"

_backends: dict[str, Backend] = {}
_last_choice: tuple[str | None, Backend] | None = None
_backends_lock = threading.Lock()


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (created on first use, then shared); BackendError if there is none."""
    backend = _backends.get(name)
    if backend is not None:
        return backend
    with _backends_lock:
        backend = _backends.get(name)
        if backend is None:
            backend = _backends[name] = _create(name)
    return backend


def backend_from_settings() -> Backend:
    """The backend ``TASKLOOM_BACKEND`` names now (``local`` when unset).

    Read at every ``instance()``, so it must be cheap: the variable's raw value is compared with the
    last one seen, and only a change goes through :class:`Settings` (which owns how it is parsed).
    """
    raw = os.environ.get(BACKEND_VARIABLE)
    last = _last_choice
    if last is not None and last[0] == raw:
        return last[1]
    backend = get_backend(Settings.from_env().backend)
    globals()["_last_choice"] = (raw, backend)
    return backend


def _create(name: str) -> Backend:
    module_name = BACKEND_MODULES.get(name)
    if module_name is None:
        raise BackendError(
            f"unknown task backend {name!r} (from TASKLOOM_BACKEND); valid backends are "
            f"{', '.join(repr(n) for n in BACKEND_MODULES)}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise BackendError(
            f"task backend {name!r} (from TASKLOOM_BACKEND) is not available yet in this taskloom; "
            "use 'local' or 'local-process'"
        ) from None
    backend: Backend = module.create_backend()
    return backend


@atexit.register
def close_backends() -> None:
    """Close every backend created so far (worker processes are ended, not left behind)."""
    with _backends_lock:
        backends = list(_backends.values())
        _backends.clear()
    for backend in backends:
        backend.close()
