"""What the fault tests share: a scene (one store, its processes, the side-effect log) and its checks.

A :class:`Scene` starts real processes (``taskloom worker``, ``taskloom run``, the ``faultapp.drive``
driver) on one store, sends their output to files (a pipe nobody reads would stall a chatty process and
pass for a hang), and kills whatever is left at the end of the test.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from processes import kill, wait_for

from taskloom import serde
from taskloom.events import EventType
from taskloom.store import Store, open_store, stores

HERE = Path(__file__).resolve().parent
APP = "faultapp.flows"
#: statuses an execution may be left in; anything else at the end of a test is stuck work
SETTLED = frozenset({"completed", "failed", "cancelled", "paused"})
#: lease of every process in the scene unless a test says otherwise: short, so failover is quick
LEASE_SECONDS = 1.0
#: the longest any single wait of these tests may take before it counts as a hang
WAIT = 60.0


@dataclass
class Started:
    """A process of the scene, its output in two files."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait(self, timeout: float = WAIT) -> int:
        """Its exit status; an AssertionError carrying its output if it runs past ``timeout``."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"process {self.pid} still running after {timeout} s\nstdout: {self.stdout()[-2000:]}\n"
                f"stderr: {self.stderr()[-2000:]}"
            ) from None

    def report(self, timeout: float = WAIT) -> dict[str, Any]:
        """Wait for it, then parse its last stdout line as JSON."""
        self.wait(timeout)
        lines = self.stdout().strip().splitlines()
        assert lines, f"process {self.pid} printed nothing (exit {self.process.returncode}): {self.stderr()}"
        report: dict[str, Any] = json.loads(lines[-1])
        return report

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)


@dataclass
class Scene:
    """One store, the environment of every process on it, and the processes started so far."""

    env: dict[str, str]
    home: Path
    store: Store
    started: list[Started] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return Path(self.env["FAULT_LOG"])

    @property
    def gate(self) -> Path:
        return Path(self.env["FAULT_GATE"])

    # -- processes ------------------------------------------------------------------------------
    def start(self, *argv: str, env: Mapping[str, str] | None = None, name: str = "proc") -> Started:
        """``python ARGV...`` in the scene's environment (plus ``env``), cwd the scene's home."""
        stem = self.home / f"{name}-{len(self.started)}"
        out, err = stem.with_suffix(".out"), stem.with_suffix(".err")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, *argv],
                env={**self.env, **(env or {})},
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        started = Started(process, out, err)
        self.started.append(started)
        return started

    def taskloom(self, *args: str, env: Mapping[str, str] | None = None) -> Started:
        return self.start("-m", "taskloom", *args, env=env, name=f"taskloom-{args[0]}")

    def worker(self, *extra: str, module: str = APP, lease: float = LEASE_SECONDS, ready: bool = True) -> Started:
        """``taskloom worker MODULE`` polling often; with ``ready``, returns once it is claiming."""
        worker = self.taskloom("worker", module, "--lease", str(lease), "--poll", "0.05", *extra)
        if ready:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: Started) -> None:
        """Until the worker has imported its workflows and is claiming (it logs which workflows it runs)."""
        wait_for(lambda: "running workflows" in worker.stderr() or not worker.alive(), timeout=WAIT, what="a worker")
        assert worker.alive(), f"the worker exited at start: {worker.stderr()}"

    def workers(self) -> list[Started]:
        return [started for started in self.started if started.out.name.startswith("taskloom-worker")]

    def drive(self, target: str, action: str, *args: str, env: Mapping[str, str] | None = None) -> Started:
        """The ``faultapp.drive`` driver: ``wf.run()`` / ``wf.resume()`` in a process of its own."""
        return self.start("-m", "faultapp.drive", target, action, *args, env=env, name="drive")

    def kill_all(self) -> None:
        kill(*(started.process for started in self.started))

    # -- what happened --------------------------------------------------------------------------
    def effects(self) -> collections.Counter[tuple[str, str]]:
        """(execution, label) -> how many times the step's body did its work, from the side-effect log.

        Marker lines (``...:waiting``, ``...:dying``, ``...:except:...``) have more fields and are left out.
        """
        if not self.log.exists():
            return collections.Counter()
        pairs = (line.split(":") for line in self.log.read_text().splitlines())
        return collections.Counter((fields[0], fields[1]) for fields in pairs if len(fields) == 2)

    def markers(self, execution_id: str) -> list[str]:
        """The marker lines of one execution, without its id: ``1:waiting``, ``except:StoreError``, ..."""
        if not self.log.exists():
            return []
        prefix = f"{execution_id}:"
        return [
            line[len(prefix) :]
            for line in self.log.read_text().splitlines()
            if line.startswith(prefix) and line.count(":") > 1
        ]

    def completed_labels(self, execution_id: str) -> set[str]:
        """Labels of the effect steps the store has recorded as completed (from their recorded arguments)."""
        events = self.store.load_events(execution_id)
        labels: dict[str, str] = {}
        for event in events:
            if event.type is EventType.STEP_STARTED and event.step_id and event.raw_value is not None:
                args, _ = serde.loads(event.raw_value)
                if len(args) >= 2 and args[0] == execution_id and isinstance(args[1], str):
                    labels[event.step_id] = args[1]
        return {
            labels[event.step_id]
            for event in events
            if event.type is EventType.STEP_COMPLETED and event.step_id in labels
        }

    def snapshot(self, execution_ids: list[str]) -> dict[tuple[str, str], int]:
        """For every step the store has completed now, how often its body has run so far.

        The store is read first: a step it counts as completed has already written its effect, so the
        counts taken afterwards include it. :meth:`assert_no_completed_step_ran_again` compares later.
        """
        completed = [(execution, label) for execution in execution_ids for label in self.completed_labels(execution)]
        effects = self.effects()
        return {key: effects[key] for key in completed}

    def assert_no_completed_step_ran_again(self, snapshot: dict[tuple[str, str], int]) -> None:
        effects = self.effects()
        ran_again = {key: (count, effects[key]) for key, count in snapshot.items() if effects[key] != count}
        assert not ran_again, f"steps the store had completed ran again (before, after): {ran_again}"

    def assert_nothing_stuck(self) -> None:
        records = self.store.list_executions(limit=10_000)
        stuck = [(record.id, record.status) for record in records if record.status not in SETTLED]
        assert not stuck, f"executions left unfinished: {stuck}"

    def status(self, execution_id: str) -> str:
        record = self.store.get_execution(execution_id)
        assert record is not None, f"no execution {execution_id}"
        return record.status

    def output(self, execution_id: str) -> Any:
        record = self.store.get_execution(execution_id)
        assert record is not None, f"no execution {execution_id}"
        return serde.loads(record.output)

    def wait_until_settled(self, execution_ids: list[str], timeout: float = WAIT) -> None:
        wait_for(
            lambda: all(self.status(execution) in SETTLED for execution in execution_ids),
            timeout=timeout,
            what=f"{len(execution_ids)} executions to finish",
        )


def scene_env(url: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of the scene's processes: the store, a short lease, the log and the gate."""
    foreign = ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_SECRET_KEY")
    env = {key: value for key, value in os.environ.items() if key not in foreign and not key.startswith("PG")}
    env.update(
        TASKLOOM_DATABASE_URL=url,
        TASKLOOM_HOME=str(home),
        TASKLOOM_LEASE_SECONDS=str(LEASE_SECONDS),
        FAULT_LOG=str(home / "effects.log"),
        FAULT_GATE=str(home / "gate"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    )
    env.update(extra)
    return env


def interrupt(started: Started, signum: int = signal.SIGINT) -> int:
    """Send ``signum`` and return the exit status."""
    started.signal(signum)
    return started.wait()


def lines_of(started: Started) -> Iterator[dict[str, Any]]:
    """The JSON lines a ``taskloom ... --json`` process printed."""
    for line in started.stdout().splitlines():
        if line.startswith("{"):
            yield json.loads(line)


def build_scene(url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> Scene:
    """A scene on the store at ``url``; this process uses that store too (``wf.create()``, ``wf.status()``)."""
    env = scene_env(url, home)
    for name in ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("TASKLOOM_DATABASE_URL", "TASKLOOM_HOME", "TASKLOOM_LEASE_SECONDS", "FAULT_LOG", "FAULT_GATE"):
        monkeypatch.setenv(name, env[name])
    stores.clear()
    return Scene(env=env, home=home, store=open_store(url))


def end_scene(scene: Scene) -> None:
    """Kill what is left of the scene's processes and close its store."""
    scene.kill_all()
    scene.store.close()
    stores.clear()
