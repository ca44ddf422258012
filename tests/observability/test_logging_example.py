"""examples/logging_and_tracing.py runs as its docstring says, and prints what the README shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = """\
INFO [None None None] shop: starting
INFO [ID None None] taskloom.user.checkout: checking out 2 items
INFO [ID 1.1 reserve] shop: reserving mug
INFO [ID 1.2 reserve] shop: reserving pen
INFO [ID None None] taskloom.user.checkout: done
result: ['mug:reserved', 'pen:reserved']
workflow checkout: completed
  step reserve_all (step 1): completed
    step reserve (step 1.1): completed
    step reserve (step 1.2): completed
"""


def test_the_logging_and_tracing_example_prints_each_lines_origin_and_the_span_tree(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'taskloom.db'}",
        "TASKLOOM_HOME": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "logging_and_tracing.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert re.sub(r"\b[0-9a-f]{32}\b", "ID", out) == EXPECTED
