"""``examples/queues.py`` runs as its own process (with its two workers) on a throwaway store; the example
asserts the limits and the priority itself, so a wrong answer exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "queues.py"


@pytest.mark.integration
def test_the_queues_example_runs_and_prints_its_result(tmp_path: Path) -> None:
    env = {**os.environ, "TASKLOOM_HOME": str(tmp_path), "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}"}
    for name in ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_START", "PYTHONPATH"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert "queue 'emails': concurrency 2, rate 5/1s" in done.stdout
    assert "at most 2 at once, the CEO's first" in done.stdout
