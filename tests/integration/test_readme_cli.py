"""The README's CLI block works as written: every command, in order, from `examples/`, on a fresh store."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def readme_cli_block() -> list[str]:
    """The commands of the ```sh block under `## CLI`, comments dropped, one per line."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## CLI\n") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "README's CLI section has no ```sh block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


def test_the_readme_cli_block_runs_as_written(tmp_path: Path) -> None:
    commands = readme_cli_block()
    assert commands[0] == "cd examples"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env["TASKLOOM_HOME"] = str(tmp_path / "home")  # a fresh store; otherwise the folder's own .taskloom/
    paused: str | None = None
    for command in commands[1:]:
        argv = shlex.split(command)
        assert argv[0] == "taskloom", command
        if "ID" in argv:
            assert paused is not None, f"{command!r} needs an execution id that no earlier command gave"
            argv = [paused if arg == "ID" else arg for arg in argv]
        done = subprocess.run(
            [sys.executable, "-m", "taskloom", *argv[1:]],
            cwd=ROOT / "examples",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        if argv[1:3] == ["list", "--status"]:
            listed = subprocess.run(
                [sys.executable, "-m", "taskloom", *argv[1:], "--json"],
                cwd=ROOT / "examples",
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            rows = json.loads(listed.stdout)
            assert [row["workflow"] for row in rows] == ["expense_approval"], rows
            paused = rows[0]["execution_id"]
            assert paused in done.stdout  # the human listing shows the id the next commands use
        if argv[1] == "resume":
            assert "approved" in done.stdout and "maria" in done.stdout, done.stdout
        if argv[1] == "status":
            assert "completed" in done.stdout, done.stdout
    assert paused is not None
