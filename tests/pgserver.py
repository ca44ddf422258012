"""A throwaway PostgreSQL server for tests: initdb into a temp dir, start on a free port, stop, delete.

It uses the server binaries of the machine (Debian's ``/usr/lib/postgresql/<version>/bin``, or ``initdb``
on ``PATH``) and needs no running cluster. PostgreSQL refuses to run as root, so when the tests run as
root the binaries run as the ``postgres`` user, and the temp dir is handed to that user.

The server trades durability for speed (``fsync=off``, ``synchronous_commit=off``,
``full_page_writes=off``): a test server that loses its data on a power cut loses nothing of value.

For fault tests, a running server can be restarted (:meth:`PostgresServer.restart`), shut down and
started again for a longer outage, or have every connection to a database cut
(:meth:`PostgresServer.terminate_connections`).

One server can serve several test sessions (``tests/mutate.py`` runs a pytest session per mutant):
the process that started it puts :func:`shared_env` in their environment (:data:`SHARED_SERVER_ENV`),
and each session's ``pg_server`` fixture attaches to it (:func:`attach`) instead of starting its own. Sessions
that run at once share it safely through a lock file: a test's schema holds it shared
(:meth:`PostgresServer.in_use`), and a restart, an outage or cutting every connection holds it
exclusively, so they never hit another session's test.

Kept free of pytest so scripts and benchmarks can start a server too::

    with running_postgres() as server:
        print(server.url())
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

SERVER_USER = "postgres"
#: Set by the process that started a server for several test sessions: the JSON of :func:`shared_env`.
SHARED_SERVER_ENV = "TASKLOOM_TEST_PG_SERVER"
DEFAULT_DATABASE = "taskloom_test"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
#: Attempts to start on a fresh free port: another process may take the port between probe and bind.
START_ATTEMPTS = 3

SPEED_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "jit": "off",
    # Each store keeps a connection per thread; tests with many threads and stores add up.
    "max_connections": "200",
}


class PostgresServerError(RuntimeError):
    """The test server could not be set up, started or stopped; the message includes its log."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: Debian's newest version, else PATH."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: _version_key(path.parent.parent.name),
    )
    if debian:
        return debian[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A running test server; ``url(db)`` names one of its databases.

    ``process`` is the ``postgres`` this object started (None for a server attached to, until this object
    starts it again); ``lock_file`` is set on a shared server (see the module docstring).
    """

    bindir: Path
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None
    lock_file: Path | None = None
    #: the database that url(), the schemas and terminate_connections() use unless told another
    database: str = DEFAULT_DATABASE

    def __post_init__(self) -> None:
        self._lock_fd: int | None = None
        self._users = 0  # tests of this session holding the shared lock (nested in_use calls)

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold a shared server in shared mode for a test (nothing for a server of one session's own)."""
        self._users += 1
        if self._users == 1:
            self._lock(fcntl.LOCK_SH)
        try:
            yield
        finally:
            self._users -= 1
            if self._users == 0:
                self._lock(fcntl.LOCK_UN)

    @contextmanager
    def _alone(self) -> Iterator[None]:
        """Hold a shared server exclusively (no other session's test is using it) for the block."""
        self._lock(fcntl.LOCK_EX)
        try:
            yield
        finally:
            self._lock(fcntl.LOCK_SH if self._users else fcntl.LOCK_UN)

    def _lock(self, operation: int) -> None:
        if self.lock_file is None:
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, operation)  # SH -> EX converts (not atomically: the SH is let go first)

    def detach(self) -> None:
        """A session attached to a shared server ends: drop its database, let go of the lock file."""
        try:
            self.drop_database(self.database)
        except psycopg.Error:
            pass  # the server is down: the owner deletes everything when it stops it
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str | None = None) -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database or self.database}"

    def admin_connection(self) -> psycopg.Connection[Any]:
        """An autocommit connection to the ``postgres`` database, for CREATE/DROP DATABASE."""
        return psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        with self.admin_connection() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing any connection a test left open on it."""
        with self.admin_connection() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def create_schema(self, name: str, database: str | None = None) -> str:
        """Create an empty schema and return a URL whose connections work in it alone.

        Much cheaper than a database per test (milliseconds, not a copy of the template's files). The
        URL sets ``search_path`` to the schema and ``application_name`` to its name, so
        :meth:`drop_schema` can find and end connections a test left open.
        """
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return f"{self.url(database)}?options=-csearch_path%3D{quote(name)}&application_name={quote(name)}"

    def drop_schema(self, name: str, database: str | None = None) -> None:
        """End the connections still open on the schema's URL, then drop the schema and all in it."""
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Restart the server on the same port and data, as an operator's ``pg_ctl restart -m fast`` does.

        Every connection is cut (clients see the server close them, then refuse them until it is up
        again); committed data stays. ``pg_ctl stop -m fast`` ends the old server, then the same
        ``postgres`` command starts again under this object's ``process`` -- rather than letting
        ``pg_ctl restart`` fork a daemon that :meth:`stop` could not wait on. Returns once the server
        accepts connections again.
        """
        with self._alone():
            self.shut_down()
            self.start_again(timeout)

    def shut_down(self) -> None:
        """Stop the server cleanly (``pg_ctl stop -m fast``), keeping its data for :meth:`start_again`.

        For an outage longer than a restart: clients are refused until the server starts again. A shared
        server is held exclusively from here until :meth:`start_again` returns.
        """
        self._lock(fcntl.LOCK_EX)
        result = _run_as_server_user(
            [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"],
            cwd=self.root,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresServerError(f"pg_ctl stop failed:\n{result.stdout}{result.stderr}\n{self.log_tail()}")
        if self.process is not None:
            self.process.wait(timeout=STOP_TIMEOUT)

    def start_again(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server that :meth:`shut_down` stopped, on the same port; return once it answers.

        A session attached to a shared server starts it as no child of its own: it must outlive the
        session, and a child left behind would be reaped by whoever waits for the session's process
        (mutmut waits for any child, and runs its first sessions in its own process).
        """
        try:
            if self.lock_file is None:
                self.process = _spawn_postgres(self.bindir, self.root, self.port)
            else:
                _spawn_postgres_detached(self.bindir, self.root, self.port)
            if not _wait_until_ready(self, timeout):
                raise PostgresServerError(f"PostgreSQL did not start again:\n{self.log_tail()}")
        finally:
            self._lock(fcntl.LOCK_SH if self._users else fcntl.LOCK_UN)

    def ensure_running(self, timeout: float = START_TIMEOUT) -> None:
        """Start a shared server again if a session stopped it and died before starting it (say, a
        mutant's session killed for running too long in the middle of an outage test)."""
        with self._alone():
            if self.answers():
                return
            # postmaster.pid: one was still starting or stopping when its session died; give it a moment.
            if (self.data_dir / "postmaster.pid").exists() and _wait_until_ready(self, 5.0):
                return
            self.start_again(timeout)

    def terminate_connections(self, database: str | None = None) -> int:
        """End every client connection to ``database`` (``pg_terminate_backend``); return how many.

        The server stays up, so clients see an ``AdminShutdown`` error on their next use of the
        connection and may reconnect at once: the fault of a proxy or a DBA cutting sessions.
        """
        with self._alone(), self.admin_connection() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                (database or self.database,),
            ).fetchall()
        return sum(1 for (ended,) in rows if ended)

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``: no checkpoint, the data is thrown away).

        Also a ``postgres`` that another session started again (a shared server restarted by a test):
        ``postmaster.pid`` says one runs on this data.
        """
        ours = self.process is not None and self.process.poll() is None
        if ours or (self.data_dir / "postmaster.pid").exists():
            _run_as_server_user(
                [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate", "-w"],
                cwd=self.root,
                check=False,
            )
        if ours and self.process is not None:
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def shared_env(server: PostgresServer) -> str:
    """The value of :data:`SHARED_SERVER_ENV` that lets other test sessions :func:`attach` to ``server``."""
    lock_file = server.root / "sessions.lock"
    return json.dumps(
        {"bindir": str(server.bindir), "root": str(server.root), "port": server.port, "lock": str(lock_file)}
    )


def attach(value: str) -> PostgresServer:
    """The shared server described by ``value`` (:func:`shared_env`), started again if it is down, with a
    new database of this session's own as its default: sessions running at once must not see each other's
    NOTIFYs (a channel spans a database, not a schema) or lose their connections to another session's
    :meth:`~PostgresServer.terminate_connections`. :meth:`~PostgresServer.detach` drops it."""
    found = json.loads(value)
    server = PostgresServer(Path(found["bindir"]), Path(found["root"]), int(found["port"]), None, Path(found["lock"]))
    server.ensure_running()
    server.database = f"session_{os.getpid()}_{secrets.token_hex(3)}"
    server.create_database(server.database)
    return server


@contextmanager
def running_postgres(
    database: str = DEFAULT_DATABASE, *, bindir: Path | None = None, start_timeout: float = START_TIMEOUT
) -> Iterator[PostgresServer]:
    """Start a fresh server with an empty ``database``; stop it and delete its files afterwards."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise PostgresServerError("PostgreSQL server binaries not found (initdb); install postgresql")
    root = Path(tempfile.mkdtemp(prefix="taskloom-pg-", dir=_temp_parent()))
    server: PostgresServer | None = None
    try:
        _give_to_server_user(root)
        _initdb(bindir, root)
        server = _start(bindir, root, start_timeout)
        server.create_database(database)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _initdb(bindir: Path, root: Path) -> None:
    result = _run_as_server_user(
        [
            str(bindir / "initdb"),
            "--pgdata",
            str(root / "data"),
            "--username",
            SERVER_USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ],
        cwd=root,
        check=False,
    )
    if result.returncode != 0:
        raise PostgresServerError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def _start(bindir: Path, root: Path, timeout: float) -> PostgresServer:
    socket_dir = root / "sock"
    socket_dir.mkdir()
    _give_to_server_user(socket_dir)
    failures = []
    for _ in range(START_ATTEMPTS):
        port = free_port()
        server = PostgresServer(bindir, root, port, _spawn_postgres(bindir, root, port))
        if _wait_until_ready(server, timeout):
            return server
        server.stop()
        failures.append(f"port {port}:\n{server.log_tail()}")
    raise PostgresServerError("PostgreSQL did not start:\n" + "\n".join(failures))


def _spawn_postgres(bindir: Path, root: Path, port: int, through: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Start ``postgres`` on ``port`` with the test settings, its output appended to the server log (through
    the command ``through``, given postgres's command line as its arguments, if any)."""
    settings = {
        **SPEED_SETTINGS,
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(root / "sock"),
        "logging_collector": "off",
    }
    command = [*through, str(bindir / "postgres"), "-D", str(root / "data")]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    with open(root / "server.log", "ab") as log:
        return _popen_as_server_user(command, cwd=root, stdout=log)


def _spawn_postgres_detached(bindir: Path, root: Path, port: int) -> None:
    """Start ``postgres`` as :func:`_spawn_postgres` does, from a shell that leaves it in the background
    and exits: the server is nobody's child here (init adopts it)."""
    shell = _spawn_postgres(bindir, root, port, through=["sh", "-c", '"$@" </dev/null &', "sh"])
    shell.wait(timeout=STOP_TIMEOUT)


def _wait_until_ready(server: PostgresServer, timeout: float) -> bool:
    """Poll until the server accepts a connection; False if it exited or the deadline passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            return False
        try:
            with psycopg.connect(server.url("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            time.sleep(0.02)  # poll interval, not a synchronisation
    return False


# -- running as the server user ------------------------------------------------------------------


def _server_account() -> pwd.struct_passwd | None:
    """The account to run the binaries as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresServerError(
            f"running as root but there is no {SERVER_USER!r} user to run PostgreSQL as "
            "(Debian's postgresql package creates it)"
        ) from None


def _give_to_server_user(path: Path) -> None:
    account = _server_account()
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


def _temp_parent() -> str:
    """A temp folder the server user can reach: ours, unless we are root and it is private."""
    parent = Path(tempfile.gettempdir()).resolve()
    if _server_account() is None:
        return str(parent)
    reachable = all(folder.stat().st_mode & 0o001 for folder in (parent, *parent.parents))
    return str(parent) if reachable else "/tmp"


def _server_env() -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGPORT, ...) must not steer the test server.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    account = _server_account()
    if account is not None:
        env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    return env


def _user_kwargs() -> dict[str, Any]:
    account = _server_account()
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _run_as_server_user(command: Sequence[str], *, cwd: Path, check: bool) -> CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=_server_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
        **_user_kwargs(),
    )


def _popen_as_server_user(command: Sequence[str], *, cwd: Path, stdout: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=_server_env(),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        **_user_kwargs(),
    )
