"""Run a module with every file it writes capped at BYTES (RLIMIT_FSIZE): a full disk without a mount.

    python -m faultapp.limited BYTES MODULE ARGS...

Python ignores SIGXFSZ, so a write past the cap fails with EFBIG instead of killing the process.
"""

from __future__ import annotations

import resource
import runpy
import sys

if __name__ == "__main__":
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv = [sys.argv[2], *sys.argv[3:]]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
