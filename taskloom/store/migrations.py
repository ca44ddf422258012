"""Numbered SQL migrations kept as ``.sql`` files beside this module, one folder per dialect."""

from __future__ import annotations

import os

#: the files sit beside this module (the package is installed as files, never zipped): read them with
#: ``os``, not ``importlib.resources``, which costs every process tempfile, shutil, zipfile, bz2 and lzma
SQL_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sql")


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """``[(version, sql), ...]`` in order, from ``store/sql/<dialect>/NNN_name.sql``."""
    folder = os.path.join(SQL_FOLDER, dialect)
    found = []
    for name in os.listdir(folder):
        if name.endswith(".sql"):
            with open(os.path.join(folder, name), encoding="utf-8") as file:
                found.append((int(name.split("_", 1)[0]), file.read()))
    return sorted(found)


def latest_migration(dialect: str) -> int:
    """The highest version in ``store/sql/<dialect>/``, from the file names alone (nothing is read)."""
    return max(
        int(name.split("_", 1)[0]) for name in os.listdir(os.path.join(SQL_FOLDER, dialect)) if name.endswith(".sql")
    )


def split_statements(sql: str) -> list[str]:
    """The statements of a migration file, with ``--`` comments removed (they may contain ';')."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]
