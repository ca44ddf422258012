"""One settings object read from the environment; every TASKLOOM_* variable is listed here."""

from __future__ import annotations

import os

from taskloom.errors import TaskloomError
from taskloom.lazy import module_getattr
from taskloom.plain_values import FrozenValue
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from taskloom.worker_settings import WorkerSettings as WorkerSettings

#: ``WorkerSettings`` (the ``taskloom worker`` flags) is defined in :mod:`taskloom.worker_settings` and
#: loaded from here on first use: only workers need it, and every run imports this module
__getattr__ = module_getattr(globals(), {"WorkerSettings": "taskloom.worker_settings"})

DEFAULT_DIR = ".taskloom"
#: where ``wf.start()`` runs an execution (TASKLOOM_START): ``auto`` runs it in the starting process unless
#: a server URL is set (then the server queues it for workers); ``local`` always in the starting process;
#: ``queue`` always queued in the store for workers (a process that must not run workflows itself)
START_MODES = ("auto", "local", "queue")


#: Settings' fields, in order (what ``==``, ``repr`` and :meth:`Settings.replace` go by)
_FIELDS = (
    "database_url",
    "backend",
    "executor",
    "server_url",
    "api_token",
    "secret_key",
    "home_dir",
    "lease_seconds",
    "store_retry_seconds",
    "sqlite_busy_timeout",
    "start",
    "ca_bundle",
    "retention",
)


class Settings(FrozenValue):
    """Every TASKLOOM_* variable, read once (:meth:`from_env`), immutable.

    Not a frozen dataclass, which compiled its methods at import, about 2 ms of every process's start
    (issue 12's one-step process): see :mod:`taskloom.plain_values`.
    """

    _fields = _FIELDS
    __slots__ = _FIELDS

    database_url: str
    backend: str
    executor: str | None
    server_url: str | None
    api_token: str | None
    secret_key: str | None
    #: TASKLOOM_HOME, default ``.taskloom`` in the working directory: the default SQLite file, the API token
    #: and the secret key live there (:attr:`home` as a Path; a str here, so that a run need not load pathlib)
    home_dir: str
    #: how long an execution's owner (a worker or an embedded run) holds it without renewing; after a
    #: crash, another worker or ``taskloom recover`` takes the execution over once this has passed
    lease_seconds: float
    #: how long a store call keeps retrying a transient failure (connection lost, database restarting,
    #: write lock held) before it gives up with StoreUnavailableError
    store_retry_seconds: float
    #: how long one SQLite write waits for another process's write lock before it counts as a failure
    sqlite_busy_timeout: float
    #: where ``wf.start()`` runs executions: one of :data:`START_MODES`
    start: str
    #: a PEM file of the certificate authorities the client trusts for a ``https://`` server
    #: (TASKLOOM_CA_BUNDLE), for a server whose certificate a private CA signed; unset: the system's
    ca_bundle: str | None
    #: TASKLOOM_RETENTION, e.g. ``30d``: workers prune finished executions older than this (taskloom.retention);
    #: unset keeps everything
    retention: str | None

    def __init__(
        self,
        database_url: str,
        backend: str,
        executor: str | None,
        server_url: str | None,
        api_token: str | None,
        secret_key: str | None,
        home_dir: str,
        lease_seconds: float = 10.0,
        store_retry_seconds: float = 30.0,
        sqlite_busy_timeout: float = 30.0,
        start: str = "auto",
        ca_bundle: str | None = None,
        retention: str | None = None,
    ) -> None:
        self._set_fields(locals())

    @property
    def home(self) -> Path:
        """TASKLOOM_HOME as a Path."""
        from pathlib import Path

        return Path(self.home_dir)

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        home = os.path.normpath(env.get("TASKLOOM_HOME") or os.path.join(os.getcwd(), DEFAULT_DIR))
        return cls(
            database_url=env.get("TASKLOOM_DATABASE_URL") or f"sqlite:///{os.path.join(home, 'taskloom.db')}",
            backend=(env.get("TASKLOOM_BACKEND") or "local").strip().lower(),
            executor=_executor(env),
            server_url=env.get("TASKLOOM_SERVER_URL") or None,
            api_token=env.get("TASKLOOM_API_TOKEN") or None,
            secret_key=env.get("TASKLOOM_SECRET_KEY") or None,
            home_dir=home,
            lease_seconds=_positive(env, "TASKLOOM_LEASE_SECONDS", 10.0),
            store_retry_seconds=_positive(env, "TASKLOOM_STORE_RETRY_SECONDS", 30.0, allow_zero=True),
            sqlite_busy_timeout=_positive(env, "TASKLOOM_SQLITE_BUSY_TIMEOUT", 30.0, allow_zero=True),
            start=_start_mode(env),
            ca_bundle=env.get("TASKLOOM_CA_BUNDLE") or None,
            retention=env.get("TASKLOOM_RETENTION") or None,
        )


def _executor(env: os._Environ[str]) -> str | None:
    """TASKLOOM_EXECUTOR: None (``local`` or unset: attempts run in this process), or a Dask scheduler's
    address as ``dask://HOST:PORT`` (``dask+tls://`` for TLS); see :mod:`taskloom.executors`."""
    raw = (env.get("TASKLOOM_EXECUTOR") or "").strip()
    if raw.lower() in ("", "local"):
        return None
    scheme, _, rest = raw.partition("://")
    if scheme.lower() not in ("dask", "dask+tls") or not rest:
        raise TaskloomError(
            f"TASKLOOM_EXECUTOR={raw!r} must be 'local' or the address of a Dask scheduler, 'dask://HOST:PORT' "
            "('dask+tls://HOST:PORT' for TLS)"
        )
    return raw


def _start_mode(env: os._Environ[str]) -> str:
    raw = env.get("TASKLOOM_START") or "auto"
    mode = raw.strip().lower()
    if mode not in START_MODES:
        raise TaskloomError(f"TASKLOOM_START={raw!r} must be one of {', '.join(START_MODES)}")
    return mode


def _positive(env: os._Environ[str], name: str, default: float, *, allow_zero: bool = False) -> float:
    """A number of seconds from the environment; a bad value is a configuration error naming the variable."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise TaskloomError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise TaskloomError(f"{name}={raw!r} must be a positive number of seconds")
    return value
