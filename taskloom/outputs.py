"""Output storage: where a step's result lives once the step has finished.

The engine calls ``storage.store(reference, value)`` when a step succeeds and records only what that
returns in the event log; on replay it calls ``storage.retrieve(recorded)`` to get the value back. The
``reference`` the engine passes is unique per step of an execution, so storing the same step again (a
retry, a replay after a crash) overwrites the same place instead of leaking a new one.

Two storages are built in, and any object with the same two methods plugs in
(:class:`~taskloom.options.OutputStorage` is the protocol):

- :class:`InlineOutputStorage` (the default) keeps the value itself in the event store: one place to back
  up, nothing else to share between machines.
- :class:`LocalFileOutputStorage` keeps large values out of the database, one pickle file per step.

Both are small frozen dataclasses, so they pickle (they travel with a task to process pools and
workers) and have a repr that shows where outputs go.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

from taskloom.errors import SerializationError, TaskError
from taskloom.options import OutputStorage
from taskloom.serde import PROTOCOL

__all__ = ["FILE_REFERENCE_PREFIX", "InlineOutputStorage", "LocalFileOutputStorage", "OutputStorage"]

FILE_REFERENCE_PREFIX = "file:"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*\.pickle")
_MAX_STEM = 100


@dataclasses.dataclass(frozen=True, slots=True)
class InlineOutputStorage:
    """Keep the value itself: ``store`` returns it, so the engine writes it to the event store.

    This is the default because it needs nothing but the database: values survive processes and
    machines exactly as far as the event log does.
    """

    def store(self, reference: str, value: Any) -> Any:
        return value

    def retrieve(self, reference: Any) -> Any:
        return reference


@dataclasses.dataclass(frozen=True, slots=True)
class LocalFileOutputStorage:
    """Pickle each value to its own file under ``directory``; the event log keeps only ``file:<name>``.

    Use it for results too large to keep in the database. The file name is derived from the reference
    (sanitised, plus a short hash so two references never share a file), so a step stored twice replaces
    its own file. Writes go to a temporary file that is renamed over the final name, so a reader (or a
    process killed mid-write) sees the old file or the new one, never half of one. Files get mode 0600
    (outputs may hold private data). Every process that replays the execution
    must see the same ``directory`` (a shared volume when workers run on several machines).

    ``directory`` is made absolute when the storage is created, so a later ``chdir`` does not move it;
    it is created on the first ``store``, not at decoration time.
    """

    directory: Path

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "directory", Path(directory).expanduser().absolute())

    def __repr__(self) -> str:
        return f"LocalFileOutputStorage({str(self.directory)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self.directory),))

    def store(self, reference: str, value: Any) -> str:
        name = _file_name(str(reference))
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as file:
                try:
                    pickle.dump(value, file, protocol=PROTOCOL)
                except Exception as error:
                    raise SerializationError(
                        f"output {reference!r}: cannot store a value of type {type(value).__qualname__} "
                        f"({error}). Use values that pickle: builtins, dataclasses, pydantic models, "
                        "module-level classes."
                    ) from None
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.directory / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return FILE_REFERENCE_PREFIX + name

    def retrieve(self, reference: Any) -> Any:
        path = self.directory / _name_from_reference(reference)
        try:
            with path.open("rb") as file:
                return pickle.load(file)
        except FileNotFoundError:
            raise TaskError(
                f"output {reference!r} is missing: no file {str(path)!r}. It was deleted, or this process "
                "does not see the same output directory as the one that stored it"
            ) from None
        except Exception as error:
            raise TaskError(f"output {reference!r} cannot be read from {str(path)!r}: {error}") from error


def _file_name(reference: str) -> str:
    """A safe, unique file name for ``reference``: readable stem + hash of the full reference."""
    stem = _UNSAFE.sub("_", reference).strip("._")[:_MAX_STEM] or "output"
    digest = hashlib.sha256(reference.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{stem}-{digest}.pickle"


def _name_from_reference(reference: Any) -> str:
    """The file name inside ``reference``; refuses anything that could point outside the directory."""
    if isinstance(reference, str) and reference.startswith(FILE_REFERENCE_PREFIX):
        name = reference[len(FILE_REFERENCE_PREFIX) :]
        if _FILE_NAME.fullmatch(name):
            return name
    raise TaskError(
        f"output reference {reference!r} was not made by LocalFileOutputStorage "
        f"(expected '{FILE_REFERENCE_PREFIX}<name>.pickle')"
    )
