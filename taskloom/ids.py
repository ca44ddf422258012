"""Random ids: ``uuid.uuid4().hex``, without importing :mod:`uuid`.

``uuid`` imports ``platform`` (and ``_uuid``) at import time, a cost every process that runs a workflow
would pay for one call (an execution id, a lease owner); the same 16 bytes from ``os.urandom`` with the
version-4 bits set give the same ids (tests/perf/test_import.py keeps ``uuid`` out of a run).
"""

from __future__ import annotations

import os

_VERSION_4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_4_SET = (0x4000 << 64) | (0x8000 << 48)


def uuid4_hex() -> str:
    """A random version-4 UUID as 32 hex digits, as ``uuid.uuid4().hex`` gives (``uuid.UUID(id)`` parses it)."""
    return f"{int.from_bytes(os.urandom(16)) & _VERSION_4_CLEAR | _VERSION_4_SET:032x}"
