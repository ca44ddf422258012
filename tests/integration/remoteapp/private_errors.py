"""An exception class only the workers import, so a client cannot raise it as itself."""

from __future__ import annotations


class WorkerOnlyError(Exception):
    """Raised by ``remoteapp.tasks.fail_with_private_error`` on a worker."""
