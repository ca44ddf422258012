"""``taskloom backup PATH`` and ``taskloom restore PATH``: a consistent copy of the whole store, and back.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies the file page by page inside one
read transaction, so the copy is one consistent moment of the store while workers keep writing (WAL:
readers never block writers). It is written next to PATH and renamed into place only once it passed
``PRAGMA integrity_check``, so a crash mid-backup never leaves a half file under PATH. Restoring uses the
same API in the other direction, which SQLite documents as safe on a live database file.

PostgreSQL: the documented way, ``pg_dump --format=custom`` and ``pg_restore --clean --if-exists``, run as
programs (they come with the server or the ``postgresql-client`` package). A store in a schema of its own
(``options=-csearch_path=NAME`` in the URL) is dumped and restored as that schema alone.

After a restore every execution is as it was at the backup: completed steps stay completed, paused
executions wait for their input, and executions that were running have leases that expired long ago, so
the next worker (or ``taskloom recover``) takes them over and replays them from their last recorded step.
Workers still running on the restored store would write over it: ``restore`` refuses while any worker
was seen in the last seconds, unless told ``force``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from taskloom.errors import StoreError, TaskloomError
from taskloom.store import is_postgres_url

__all__ = ["BackupError", "BackupResult", "backup", "restore"]


class BackupError(TaskloomError):
    """A backup or restore that could not be made; the message names the file or program at fault."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What a backup or restore did: the file, its size, and how many executions it holds."""

    path: Path
    size_bytes: int
    executions: int | None


# -- backup -------------------------------------------------------------------------------------------
def backup(url: str, path: str | os.PathLike[str]) -> BackupResult:
    """Write a consistent copy of the store at ``url`` to ``path`` (replaced if it exists)."""
    target = Path(path)
    if target.is_dir():
        raise BackupError(f"backup PATH {str(target)!r} is a folder; give a file name")
    if not target.parent.is_dir():
        raise BackupError(f"backup PATH {str(target)!r}: the folder {str(target.parent)!r} does not exist")
    if is_postgres_url(url):
        return _pg_backup(url, target)
    return _sqlite_backup(url, target)


def _sqlite_source(url: str) -> Path:
    from taskloom.store.sqlite import path_from_url

    source = path_from_url(url)
    if not source.is_file():
        raise BackupError(f"no SQLite store at {str(source)!r} to back up (TASKLOOM_DATABASE_URL={url!r})")
    return source


def _sqlite_backup(url: str, target: Path) -> BackupResult:
    source = _sqlite_source(url)
    if source.resolve() == target.resolve():
        raise BackupError(f"backup PATH {str(target)!r} is the store itself")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        with _connect(source, readonly=True) as src, _connect(partial) as dst:
            src.backup(dst)  # every page in one step: one read transaction, one consistent moment
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
            _check_integrity(dst, partial)
            executions = _count_executions(dst)
        _fsync(partial)
        os.replace(partial, target)
        _fsync_folder(target.parent)
    except sqlite3.Error as error:
        raise BackupError(f"backing up {str(source)!r} to {str(target)!r} failed: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(target, target.stat().st_size, executions)


# -- restore ------------------------------------------------------------------------------------------
def restore(url: str, path: str | os.PathLike[str], *, force: bool = False) -> BackupResult:
    """Replace the store at ``url`` with the backup at ``path``.

    Refuses while a worker was seen on the store in the last seconds (it would keep writing over the
    restored state), unless ``force``.
    """
    source = Path(path)
    if not source.is_file():
        raise BackupError(f"no backup file at {str(source)!r}")
    if not force:
        _refuse_if_workers_live(url)
    if is_postgres_url(url):
        return _pg_restore(url, source)
    return _sqlite_restore(url, source)


def _sqlite_restore(url: str, source: Path) -> BackupResult:
    from taskloom.store.sqlite import path_from_url

    target = path_from_url(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _connect(source, readonly=True) as src:
            _check_integrity(src, source)
            executions = _count_executions(src)
            if executions is None:
                raise BackupError(f"{str(source)!r} is an SQLite file but not a taskloom store (no executions table)")
            with _connect(target) as dst:
                src.backup(dst)  # SQLite's own way to replace a live database's content
                dst.execute("PRAGMA journal_mode = WAL")
    except sqlite3.DatabaseError as error:
        raise BackupError(f"restoring {str(source)!r} into {str(target)!r} failed: {error}") from None
    _migrate(url)
    return BackupResult(source, source.stat().st_size, executions)


def _refuse_if_workers_live(url: str) -> None:
    if not is_postgres_url(url):
        from taskloom.store.sqlite import path_from_url

        if not path_from_url(url).exists():
            return  # nothing there yet: nobody can be working on it
    from taskloom.presence import live_workers
    from taskloom.store import open_store

    try:
        store = open_store(url)
    except StoreError:
        return  # a store that does not open has no workers to protect; the restore itself will say more
    try:
        live = live_workers(store)
    finally:
        store.close()
    if live:
        names = ", ".join(sorted(worker.process for worker in live))
        raise BackupError(
            f"{len(live)} worker(s) still use this store ({names}): stop them before restoring, or they "
            "would write over the restored executions (--force restores anyway)"
        )


def _migrate(url: str) -> None:
    """Open the restored store once: a backup of an older taskloom gets this version's migrations now."""
    from taskloom.store import open_store

    open_store(url).close()


# -- PostgreSQL: pg_dump and pg_restore ---------------------------------------------------------------
def _pg_program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        bindir = os.environ.get("TASKLOOM_PG_BINDIR")
        candidate = Path(bindir) / name if bindir else None
        if candidate is not None and candidate.is_file():
            return str(candidate)
        raise BackupError(
            f"a PostgreSQL store is backed up with {name}, which is not on PATH: install the PostgreSQL client "
            f"programs (Debian: apt install postgresql-client) or set TASKLOOM_PG_BINDIR to their folder"
        )
    return found


def _pg_target(url: str) -> tuple[str, str | None]:
    """The URL for pg_dump/pg_restore (libpq reads it as is) and the store's own schema, if it has one."""
    parts = urlsplit(url)
    if parts.scheme == "postgres":
        parts = parts._replace(scheme="postgresql")
    options = " ".join(parse_qs(parts.query).get("options", []))
    schema = None
    for option in unquote(options).split():
        if option.startswith("-csearch_path="):
            schema = option.split("=", 1)[1].split(",")[0].strip('"') or None
    return urlunsplit(parts), schema


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise BackupError(f"{what} failed (exit {done.returncode}): {' / '.join(detail[-3:]) or 'no output'}")


def _pg_backup(url: str, target: Path) -> BackupResult:
    from taskloom.store.postgres import redacted

    dsn, schema = _pg_target(url)
    partial = target.with_name(f".{target.name}.partial")
    command = [_pg_program("pg_dump"), "--format=custom", "--no-owner", f"--file={partial}"]
    if schema is not None:
        command.append(f"--schema={schema}")
    try:
        _run([*command, f"--dbname={dsn}"], f"pg_dump of {redacted(url)}")
        _fsync(partial)
        os.replace(partial, target)
        _fsync_folder(target.parent)
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(target, target.stat().st_size, _pg_count(url))


def _pg_restore(url: str, source: Path) -> BackupResult:
    from taskloom.store.postgres import redacted

    dsn, _ = _pg_target(url)
    command = [
        _pg_program("pg_restore"),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",  # all or nothing: a failed restore leaves the store as it was
        f"--dbname={dsn}",
        str(source),
    ]
    _run(command, f"pg_restore of {str(source)!r} into {redacted(url)}")
    _migrate(url)
    return BackupResult(source, source.stat().st_size, _pg_count(url))


def _pg_count(url: str) -> int:
    """How many executions the store at ``url`` holds, through the store (its retries, its errors)."""
    from taskloom.store import open_store
    from taskloom.store.statements import Statements

    store = open_store(url)
    try:
        return int(Statements(store).run("SELECT COUNT(*) FROM executions")[0][0])
    finally:
        store.close()


# -- SQLite helpers -----------------------------------------------------------------------------------
def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    return sqlite3.connect(path, timeout=30)


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    try:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{str(path)!r} is not a readable SQLite database: {error}") from None
    if verdict != "ok":
        raise BackupError(f"{str(path)!r} fails SQLite's integrity check: {verdict}")


def _count_executions(conn: sqlite3.Connection) -> int | None:
    try:
        return int(conn.execute("SELECT COUNT(*) FROM executions").fetchone()[0])
    except sqlite3.OperationalError:
        return None


def _fsync(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
