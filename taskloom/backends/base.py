"""The backend seam: where an instance's function runs (threads here, a process pool, remote workers).

A backend gets an :class:`~taskloom.runtime.instance.InstanceRun` per started instance and must not block
the caller: it runs the function somewhere, replays progress, logs and status on ``run.control``, forwards
stop requests (``run.on_stop``), and reports the outcome with ``run.succeed`` / ``run.fail``. Everything
else (slots, queueing, futures, sessions) is the runtime's job, so a new backend stays small.

Each backend lives in a module of this package with a ``create_backend() -> Backend`` function, listed by
name in :data:`taskloom.backends.BACKEND_MODULES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from taskloom.runtime.instance import InstanceRun


class Backend(Protocol):
    """Runs task instances. One object per backend name and process, shared by every session."""

    @property
    def name(self) -> str:
        """The ``TASKLOOM_BACKEND`` value that selects this backend."""
        ...

    def submit(self, run: InstanceRun) -> None:
        """Start running ``run`` soon and return at once; report through ``run`` (see the module doc)."""
        ...

    def close(self) -> None:
        """Release threads, processes or connections; called at interpreter exit."""
        ...
