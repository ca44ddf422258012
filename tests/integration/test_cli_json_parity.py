"""`--json` gives the same shape locally and through a server (issue 9): the same objects, the same times.

One store, two ways in: the command on the store itself, and the command with ``--server`` through a real
``taskloom server`` on 127.0.0.1 serving that store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import free_port, stop, wait_for

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "TASKLOOM_HOME": str(tmp_path),
        "TASKLOOM_API_TOKEN": "parity-token-0123456789",
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "server", "cliapp.flows", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert server.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, timeout=30, what="the server")
        yield env, url
    finally:
        stop(server)


def run(env: dict[str, str], *args: str) -> object:
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", *args], env=env, cwd=env["TASKLOOM_HOME"], capture_output=True, text=True
    )
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return json.loads(done.stdout)


def test_status_list_events_and_secrets_are_the_same_json_with_or_without_a_server(
    both: tuple[dict[str, str], str],
) -> None:
    env, url = both
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "run", "cliapp.flows:progress", "2", "--json"],
        env=env,
        cwd=env["TASKLOOM_HOME"],
        capture_output=True,
        text=True,
    )
    execution = json.loads(done.stdout.splitlines()[-1])["execution_id"]
    assert run(env, "--json", "secrets", "set", "PARITY_KEY", "value-0123456789") == {"set": "PARITY_KEY"}
    for words in (("status", execution), ("list",), ("events", execution), ("secrets", "list")):
        local = run(env, "--json", *words)
        remote = run(env, "--json", "--server", url, *words)
        assert local == remote, words
