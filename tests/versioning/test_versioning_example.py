"""``examples/versioning.py`` runs as its own process on a throwaway store and prints its result; the
example asserts each branch and the refused version itself, so a wrong answer exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "versioning.py"


@pytest.mark.integration
def test_the_versioning_example_runs_and_prints_its_result(tmp_path: Path) -> None:
    env = {**os.environ, "TASKLOOM_HOME": str(tmp_path), "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}"}
    for name in ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_START"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert "result: the old invoice kept 10 %, the new ones got 20 %" in done.stdout
    assert "was started with version '1', but this code has version '2'" in done.stdout
