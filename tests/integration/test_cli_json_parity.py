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


def test_run_through_a_server_says_at_once_when_no_live_worker_runs_the_workflow(
    both: tuple[dict[str, str], str],
) -> None:
    env, url = both
    home = Path(env["TASKLOOM_HOME"])
    err_path = home / "run.err"
    with err_path.open("w") as err:
        waiting = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "--server", url, "run", "cliapp.flows:progress", "1"],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        line = wait_for(
            lambda: next((ln for ln in err_path.read_text().splitlines() if "no live worker" in ln), None),
            timeout=30,
            what="the no-worker notice",
        )
        assert "'progress'" in line and "taskloom worker cliapp.flows" in line
        assert waiting.poll() is None  # it still waits: a worker may start
        log = home / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "taskloom", "worker", "cliapp.flows", "--poll", "0.05"],
                env=env,
                cwd=home,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        try:
            assert waiting.wait(timeout=60) == 0  # the queued execution ran once the worker came
            wait_for(lambda: "running workflows" in log.read_text(), what="the worker")
            again = subprocess.run(
                [sys.executable, "-m", "taskloom", "--server", url, "run", "cliapp.flows:progress", "1"],
                env=env,
                cwd=home,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert again.returncode == 0 and "no live worker" not in again.stderr, again.stderr
        finally:
            stop(worker)
    finally:
        stop(waiting)
