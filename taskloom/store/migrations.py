"""Numbered SQL migrations kept as ``.sql`` files beside this module, one folder per dialect."""

from __future__ import annotations

from importlib import resources


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """``[(version, sql), ...]`` in order, from ``store/sql/<dialect>/NNN_name.sql``."""
    folder = resources.files("taskloom.store") / "sql" / dialect
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def split_statements(sql: str) -> list[str]:
    """The statements of a migration file, with ``--`` comments removed (they may contain ';')."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]
