"""The `taskloom` command on the embedded store, run as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from processes import wait_for

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "TASKLOOM_HOME": str(tmp_path),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskloom", *args],
            env=env,
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def test_run_shows_step_progress_logs_and_the_result(cli) -> None:  # type: ignore[no-untyped-def]
    done = cli("run", "cliapp.flows:progress", "4")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "crunch (step 1)" in out
    assert "100%" in out and "chunk 4/4" in out
    assert "[info] crunch: crunched everything" in out
    assert '"total": 40' in out


def test_run_json_prints_events_then_the_result(cli) -> None:  # type: ignore[no-untyped-def]
    done = cli("run", "cliapp.flows:progress", "2", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    types = [line["type"] for line in lines]
    assert types[0] == "execution_started"
    assert "step_progress" in types and "step_log" in types
    assert lines[-1] == {
        "type": "result",
        "execution_id": lines[-1]["execution_id"],
        "workflow": "progress",
        "status": "completed",
        "output": {"total": 20},
    }


def test_pause_resume_status_events_and_list(cli) -> None:  # type: ignore[no-untyped-def]
    started = cli("run", "cliapp.flows:approval", '"expense 7"', "--json")
    assert started.returncode == 0, started.stderr
    result = json.loads(started.stdout.splitlines()[-1])
    execution = result["execution_id"]
    assert result["status"] == "paused"

    listed = json.loads(cli("list", "--status", "paused", "--json").stdout)
    assert [r["execution_id"] for r in listed] == [execution]

    resumed = cli("resume", execution, '"approved"')
    assert resumed.returncode == 0, resumed.stderr
    assert "expense 7: approved" in resumed.stdout

    status = json.loads(cli("status", execution, "--json").stdout)
    assert status["status"] == "completed"
    assert status["output"] == "expense 7: approved"
    events = json.loads(cli("events", execution, "--json").stdout)
    assert "execution_resumed" in [e["type"] for e in events]
    assert events[-1]["type"] == "execution_completed"
    human = cli("events", execution)
    assert "execution_paused" in human.stdout and "execution_resumed" in human.stdout


def test_a_failing_workflow_exits_1_and_names_the_error(cli) -> None:  # type: ignore[no-untyped-def]
    done = cli("run", "cliapp.flows:broken", '"disk full"')
    assert done.returncode == 1
    assert "ValueError: disk full" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "cliapp.flows:progress", "{not json"), "INPUT must be JSON"),
        (("run", "cliapp.flows"), "must look like MODULE:WORKFLOW"),
        (("run", "cliapp.nowhere:progress"), "cannot import module 'cliapp.nowhere'"),
        (("run", "cliapp.flows:missing"), "has no attribute 'missing'"),
        (("run", "cliapp.flows:crunch"), "not a @workflow"),
        (("status", "no-such-id"), "no execution 'no-such-id'"),
        (("resume", "no-such-id", "1"), "no execution 'no-such-id'"),
        (("list", "--status", "sleepy"), "--status must be one of"),
        (("list", "--limit", "-5"), "--limit must be at least 1, got -5"),
        (("list", "--limit", "0"), "--limit must be at least 1, got 0"),
        (("secrets", "remove", "NEVER_SET"), "no secret named 'NEVER_SET'"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(cli, args, message) -> None:  # type: ignore[no-untyped-def]
    done = cli(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_store_that_cannot_be_used_is_one_line_naming_store_error_and_exit_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"not a database " * 400)
    unreachable = "postgresql://nobody@127.0.0.1:1/taskloom"  # port 1: nothing listens, refused at once
    for url in (f"sqlite:///{damaged}", unreachable):
        done = cli("--database-url", url, "run", "cliapp.flows:progress", "2")
        assert done.returncode == 2, (done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr  # psycopg's message has a tab-indented second line of its own
        assert lines[0].startswith("taskloom run: StoreError: "), lines


def test_secrets_set_list_remove_never_print_the_value(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("secrets", "set", "API_KEY", stdin="s3cr3t-value\n").returncode == 0
    assert cli("secrets", "set", "OTHER", "v2").returncode == 0
    listed = cli("secrets", "list", "--json")
    assert json.loads(listed.stdout) == ["API_KEY", "OTHER"]
    assert "s3cr3t-value" not in listed.stdout + listed.stderr
    assert b"s3cr3t-value" not in (tmp_path / "cli.db").read_bytes()
    assert cli("secrets", "remove", "API_KEY").returncode == 0
    assert json.loads(cli("secrets", "list", "--json").stdout) == ["OTHER"]


USER_MODULE = """
from dataclasses import dataclass

from taskloom import task, workflow


@dataclass
class Receipt:
    order: str
    total: float


@task
def price(order: str) -> Receipt:
    return Receipt(order, 12.5)


@workflow
async def checkout(ctx):
    return await price(ctx.input)
"""


def test_the_installed_command_finds_modules_and_classes_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(USER_MODULE)
    command = Path(sys.executable).parent / "taskloom"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_") and k != "PYTHONPATH"}
    env["TASKLOOM_HOME"] = str(tmp_path / "home")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(command), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    started = run("run", "shop:checkout", '"A-7"', "--json")
    assert started.returncode == 0, started.stderr
    execution = json.loads(started.stdout.splitlines()[-1])["execution_id"]
    status = run("status", execution)
    assert status.returncode == 0, status.stderr
    assert '"order": "A-7"' in status.stdout and '"total": 12.5' in status.stdout
    assert "undecodable" not in status.stdout


def test_ctrl_c_names_the_command_that_continues_the_execution(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "ticks.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "TASKLOOM_HOME": str(tmp_path),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    running = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "run", "cliapp.flows:ticking", json.dumps(str(log))],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: log.exists() and len(log.read_text().split()) >= 2, timeout=30, what="two ticks")
    running.send_signal(signal.SIGINT)
    _, err = running.communicate(timeout=30)
    assert running.returncode == 130, err
    command = next(line.strip() for line in err.splitlines() if "--execution-id" in line)
    assert command.startswith("taskloom run cliapp.flows:ticking --execution-id ")
    assert len(log.read_text().split()) >= 2  # so a re-run of completed steps would show as duplicates

    continued = cli(*command.split()[1:])
    assert continued.returncode == 0, continued.stderr
    assert "15" in continued.stdout  # 0 + 1 + ... + 5
    ticks = log.read_text().split()
    assert sorted(set(ticks)) == [str(n) for n in range(6)]
    assert len(ticks) - len(set(ticks)) <= 1  # at most the step running at the interrupt ran again


def test_output_piped_into_a_reader_that_leaves_ends_quietly(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = cli("run", "cliapp.flows:progress", "3000", "--json")  # 3,000 progress events: far more than a pipe holds
    assert done.returncode == 0, done.stderr
    execution = json.loads(done.stdout.splitlines()[-1])["execution_id"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "TASKLOOM_HOME": str(tmp_path),
    }
    reading = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "events", execution],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reading.stdout is not None and reading.stderr is not None
    assert b"execution_started" in reading.stdout.readline()
    reading.stdout.close()  # `| head -1`: the reader leaves
    err = reading.stderr.read().decode()
    assert reading.wait(timeout=60) == 141, err  # as a shell reports a process that SIGPIPE ended
    assert err == ""  # no traceback, no "Exception ignored" at exit


@pytest.mark.parametrize(
    ("command", "ready"),
    [(["server", "--port", "0"], "taskloom server: http"), (["worker", "cliapp.flows"], "running")],
)
def test_long_running_commands_survive_a_peer_that_hangs_up(tmp_path: Path, command: list[str], ready: str) -> None:
    """A peer leaving a socket mid-write must be an error on that socket, not SIGPIPE ending the process.

    Python ignores SIGPIPE; the CLI once restored its default action for `| head`, and the server then
    died whenever a client hung up while it wrote a response (a worker would die the same way when a
    task's HTTP peer hung up).
    """
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "TASKLOOM_HOME": str(tmp_path),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    output = tmp_path / "output.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskloom", *command], env=env, cwd=tmp_path, stdout=sink, stderr=sink
        )
    try:
        wait_for(lambda: ready in output.read_text() or process.poll() is not None, timeout=30, what="the command")
        assert process.poll() is None, output.read_text()
        status = Path(f"/proc/{process.pid}/status").read_text()
        mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
        assert mask & (1 << (signal.SIGPIPE - 1)), f"SIGPIPE is not ignored (SigIgn {mask:x})"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_resume_shows_the_steps_before_the_pause_as_replayed_not_started_again(cli) -> None:  # type: ignore[no-untyped-def]
    started = cli("run", "cliapp.flows:checked_approval", "3", "--json")
    assert started.returncode == 0, started.stderr
    execution = json.loads(started.stdout.splitlines()[-1])["execution_id"]
    resumed = cli("resume", execution, '"approved"')
    assert resumed.returncode == 0, resumed.stderr
    assert "↺ crunch (step 1) replayed: completed earlier, not run again" in resumed.stdout
    assert "▶ crunch (step 1) started" not in resumed.stdout
    assert "chunk 3/3" not in resumed.stdout  # its progress belongs to the first run
    assert "30: approved" in resumed.stdout


def test_a_failed_workflow_shows_its_traceback_with_the_users_frames(cli) -> None:  # type: ignore[no-untyped-def]
    done = cli("run", "cliapp.flows:broken", '"bad thing"')
    assert done.returncode == 1
    err = done.stderr
    assert 'cliapp/flows.py", line' in err and "in explode" in err and "raise ValueError(reason)" in err
    assert "taskloom/policy.py" not in err and "taskloom/replay.py" not in err
    assert err.rstrip().endswith("failed: ValueError: bad thing")


def test_version(cli) -> None:  # type: ignore[no-untyped-def]
    from importlib.metadata import version

    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"taskloom {version('taskloom')}"


@pytest.mark.parametrize(
    "words",
    [
        ("--json", "list", "--limit", "5"),
        ("list", "--json", "--limit", "5"),
        ("list", "--limit", "5", "--json"),
    ],
)
def test_json_is_accepted_anywhere_on_the_line(cli, words: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", "cliapp.flows:progress", "1").returncode == 0
    done = cli(*words)
    assert done.returncode == 0, done.stderr
    assert [row["workflow"] for row in json.loads(done.stdout)] == ["progress"]


@pytest.mark.parametrize(
    "words", [("--json", "secrets", "list"), ("secrets", "--json", "list"), ("secrets", "list", "--json")]
)
def test_secrets_take_json_anywhere_too(cli, words: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    assert cli("secrets", "set", "API_KEY", stdin="sk-live-123456\n").returncode == 0
    done = cli(*words)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["API_KEY"]


def test_local_json_has_the_http_apis_shape_with_iso_times(cli) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    done = cli("run", "cliapp.flows:progress", "2", "--json")
    execution = json.loads(done.stdout.splitlines()[-1])["execution_id"]
    status = json.loads(cli("status", execution, "--json").stdout)
    assert set(status) == {
        "execution_id",
        "workflow",
        "target",
        "status",
        "parent_id",
        "version",
        "created_at",
        "updated_at",
        "input",
        "output",
    }
    assert status["target"] == "cliapp.flows:progress" and status["input"] == 2 and status["output"] == {"total": 20}
    assert status["version"] is None  # a workflow without a version option
    assert status["parent_id"] is None  # a top-level execution (a child names its parent)
    for field in ("created_at", "updated_at"):
        moment = datetime.fromisoformat(status[field])
        assert moment.utcoffset() is not None and "T" in status[field], status[field]
    listed = json.loads(cli("list", "--json").stdout)
    assert set(listed[0]) == set(status) - {"input"}
    assert listed[0]["created_at"] == status["created_at"]
