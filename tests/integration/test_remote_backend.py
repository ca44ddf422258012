"""The remote backend end to end: a real server process and two real instance-worker processes.

This process is the client: ``TASKLOOM_BACKEND=remote`` makes the Numerous document's patterns (sessions,
instances, futures, TaskControl, stop, cancel) run on the workers, once per store (``[sqlite]``,
``[postgres]``). Waits are bounded polls with deadlines, never sleeps standing in for synchronisation.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from processes import free_port, stop, wait_for

import taskloom.backends
from taskloom import Session, TaskControl
from taskloom.client import TaskloomClient
from taskloom.control import TaskControlHandler, set_task_control_handler
from taskloom.errors import MaxInstancesReachedError, TaskCancelledError, TaskError

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from remoteapp import tasks as app  # noqa: E402  (needs HERE on sys.path, as the workers have it)

pytestmark = pytest.mark.integration
MODULE = "remoteapp.tasks"
LEASE_SECONDS = 1.0
WORKER_CONCURRENCY = 4
WORKER_OPTIONS = (
    "--concurrency",
    str(WORKER_CONCURRENCY),
    "--lease",
    str(LEASE_SECONDS),
    "--poll",
    "0.05",
    "--grace",
    "5",
)
T = TypeVar("T")


# -- processes ----------------------------------------------------------------------------------------
@dataclass
class Cluster:
    """The server and the instance workers of one store, and the folder where the tasks leave traces."""

    kind: str
    url: str
    token: str
    env: dict[str, str]
    folder: Path
    server: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def probes(self) -> Path:
        return Path(self.env["TASKLOOM_TEST_DIR"])

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = self.folder / f"worker-{time.monotonic_ns()}.log"
        with log.open("wb") as err:
            worker = subprocess.Popen(
                [sys.executable, "-m", "taskloom", "worker", MODULE, *WORKER_OPTIONS],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        log = log.rename(self.folder / f"worker-{worker.pid}.log")
        wait_for(lambda: "running tasks" in log.read_text() or worker.poll() is not None, what="a worker to start")
        assert worker.poll() is None, log.read_text()
        self.workers.append(worker)
        return worker

    def worker_log(self, pid: int) -> str:
        return (self.folder / f"worker-{pid}.log").read_text()


def start_server(env: dict[str, str], folder: Path) -> tuple[str, subprocess.Popen[bytes]]:
    for attempt in range(3):
        port = free_port()
        log = folder / f"server-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "taskloom", "server", "--port", str(port)], env=env, stdout=out, stderr=out
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return url, process
            except httpx.TransportError:
                time.sleep(0.02)
        stop(process)
        if "address already in use" not in log.read_text().lower() or attempt == 2:
            raise AssertionError(f"the server did not start:\n{log.read_text()}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kind: str = request.param
    folder = tmp_path_factory.mktemp(f"remote-{kind}")
    schema = f"remote_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if kind == "postgres":
        pg = request.getfixturevalue("pg_server")
        database_url = pg.create_schema(schema)
    else:
        database_url = f"sqlite:///{folder / 'taskloom.db'}"
    (folder / "probes").mkdir()
    token = secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env.update(
        TASKLOOM_DATABASE_URL=database_url,
        TASKLOOM_HOME=str(folder / "home"),
        TASKLOOM_API_TOKEN=token,
        TASKLOOM_TEST_DIR=str(folder / "probes"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    )
    url, server = start_server(env, folder)
    running = Cluster(kind, url, token, env, folder, server)
    try:
        running.start_worker()
        running.start_worker()
        yield running
    finally:
        for worker in running.workers:
            stop(worker)
        stop(server)
        if kind == "postgres":
            request.getfixturevalue("pg_server").drop_schema(schema)


def _reset_backends() -> None:
    taskloom.backends.close_backends()
    taskloom.backends._last_choice = None  # the backend chosen for the previous test's server


@pytest.fixture
def remote(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """This process as a client of the cluster: ``TASKLOOM_BACKEND=remote`` and the server's URL and token."""
    monkeypatch.setenv("TASKLOOM_BACKEND", "remote")
    monkeypatch.setenv("TASKLOOM_SERVER_URL", cluster.url)
    monkeypatch.setenv("TASKLOOM_API_TOKEN", cluster.token)
    monkeypatch.setenv("TASKLOOM_TEST_DIR", str(cluster.probes))
    _reset_backends()
    yield cluster
    _reset_backends()
    if cluster.server.poll() is not None:  # say so here, not as "connection refused" in every later test
        port = cluster.url.rsplit(":", 1)[1]
        log = (cluster.folder / f"server-{port}.log").read_text()[-3000:]
        raise AssertionError(f"the server exited with {cluster.server.returncode}; the end of its log:\n{log}")


def runs(cluster: Cluster, prefix: str) -> list[tuple[str, float, int, str]]:
    """The ``tracked`` task's records for labels starting with ``prefix``: (event, time, pid, label)."""
    path = cluster.probes / f"tracked-{prefix}.log"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        event, when, pid, label = line.split()
        records.append((event, float(when), int(pid), label))
    return records


def most_at_once(records: list[tuple[str, float, int, str]]) -> int:
    """The largest number of runs between their start and end at one moment (ends count first on ties)."""
    moments = sorted((when, 0 if event == "end" else 1) for event, when, _, _ in records)
    running = peak = 0
    for _, starts in moments:
        running += 1 if starts else -1
        peak = max(peak, running)
    return peak


# -- the document's patterns --------------------------------------------------------------------------
class RecordingHandler(TaskControlHandler):
    def __init__(self) -> None:
        self.progress: list[float] = []

    def update_progress(self, task_control: TaskControl, progress: float, status: str | None) -> None:
        self.progress.append(progress)


def test_quickstart_runs_on_a_worker_with_progress_and_logs_arriving_live(remote: Cluster) -> None:
    handler = RecordingHandler()
    set_task_control_handler(handler)
    try:
        with Session():
            assert app.process_data([1, 2, 3, 4, 5]) == {"processed": 5, "items": [1, 2, 3, 4, 5]}  # direct call
            future = app.long_running_task.instance().start(20)
            midway = wait_for(lambda: 0 < future.progress < 100 and future.progress, what="progress while it runs")
            assert future.status == "running" and not future.done
            assert future.result(timeout=30) == "Processed 20 items"
    finally:
        set_task_control_handler(TaskControlHandler())
    assert 0 < midway < 100
    assert future.progress == 100.0 and future.status_message == "Processing item 20/20"
    assert [r.message for r in future.logs] == ["Task completed successfully"]
    assert handler.progress[-1] == 100.0, "this process's TaskControlHandler sees the worker's progress"


def test_log_records_made_on_the_worker_name_the_task_and_instance(remote: Cluster) -> None:
    with Session():
        future = app.whose_logs.instance().start("x")
        assert future.result(timeout=30) == ["whose_logs", future.instance_id]


def test_batches_run_on_the_workers_and_results_come_back_in_order(remote: Cluster) -> None:
    data_batches = [[i, i + 1, i + 2] for i in range(0, 18, 3)]
    with Session(name="batch-processing"):
        futures = [app.process_batch.instance().start(f"batch_{i}", batch) for i, batch in enumerate(data_batches)]
        results = [f.result(timeout=30) for f in futures]
    assert results == [{"batch_id": f"batch_{i}", "processed": 3} for i in range(6)]
    assert all(f.status == "completed" and f.progress == 100.0 for f in futures)
    assert futures[0].logs[-1].message == "Batch batch_0 completed"


def test_stop_asks_the_task_to_return_and_its_value_is_the_result(remote: Cluster) -> None:
    with Session():
        instance = app.cancellable_task.instance()
        future = instance.start(600)
        wait_for(lambda: future.progress > 0, what="the task to report progress")
        instance.stop()
        assert future.result(timeout=10) == "Cancelled"
    assert future.status == "completed"
    assert "Task cancelled gracefully" in [r.message for r in future.logs]


def test_a_failing_task_raises_its_own_exception_at_the_caller(remote: Cluster) -> None:
    with Session():
        future1 = app.error_prone_task.instance().start(False)
        future2 = app.error_prone_task.instance().start(True)
        assert future1.result(timeout=30) == "Task completed successfully"
        with pytest.raises(ValueError) as raised:
            future2.result(timeout=30)
    assert str(raised.value) == "Simulated error"
    assert future2.status == "failed" and isinstance(future2.error, ValueError)
    assert "Task failed: Simulated error" in [r.message for r in future2.logs]
    assert any("raised on taskloom worker" in note for note in raised.value.__notes__)


def test_errors_come_back_as_their_own_types_when_this_process_knows_them(remote: Cluster) -> None:
    assert "remoteapp.private_errors" not in sys.modules
    with Session():
        quota = app.fail_with.instance().start("quota", "over the limit")
        key = app.fail_with.instance().start("key", "missing")
        timeout = app.fail_with.instance().start("timeout", "too slow")
        private = app.fail_with_private_error.instance().start()
        with pytest.raises(app.QuotaError, match="over the limit"):
            quota.result(timeout=30)
        with pytest.raises(KeyError) as missing:
            key.result(timeout=30)
        assert missing.value.args == ("missing",)
        with pytest.raises(TimeoutError, match="too slow"):
            timeout.result(timeout=30)
        with pytest.raises(TaskError, match=r"remoteapp\.private_errors\.WorkerOnlyError: only the worker knows"):
            private.result(timeout=30)
    assert "remoteapp.private_errors" not in sys.modules, "a worker's report never makes the client import code"


def test_cancelling_a_pending_instance_means_it_never_runs(remote: Cluster) -> None:
    with Session():
        futures = [app.tracked.instance().start(f"pending-{i}", 0.3) for i in range(3)]  # max_parallel=2
        waiting: str = futures[2].status
        assert waiting == "pending"
        assert futures[2].cancel() is True
        assert [f.result(timeout=30) for f in futures[:2]] == ["pending-0", "pending-1"]
    with pytest.raises(TaskCancelledError):
        futures[2].result()
    assert futures[2].status == "cancelled"
    assert sorted(label for event, _, _, label in runs(remote, "pending") if event == "start") == [
        "pending-0",
        "pending-1",
    ]


def test_cancelling_an_instance_queued_on_the_server_means_it_never_runs(remote: Cluster) -> None:
    slots = 2 * WORKER_CONCURRENCY
    with Session() as session:
        instances = [app.tracked_wide.instance() for _ in range(slots)]
        busy = [instance.start(f"queued-{i}", 30) for i, instance in enumerate(instances)]
        wait_for(lambda: all(f.status == "running" for f in busy), what="every worker slot to be taken")
        waiting = app.tracked_wide.instance().start(f"queued-{slots}", 30)  # no worker has a free slot
        with TaskloomClient(remote.url, remote.token) as client:
            wait_for(lambda: client.instance(waiting.instance_id)["status"] == "queued", what="it to be queued")
            assert waiting.cancel() is True
            view = wait_for(
                lambda: (v := client.instance(waiting.instance_id))["status"] == "cancelled" and v,
                what="the server to cancel it",
            )
        for instance in instances:
            instance.stop()
        assert sorted(f.result(timeout=30) for f in busy) == sorted(f"queued-{i}" for i in range(slots))
        assert session.instances == []
    assert view["started_at"] is None and view["attempts"] == 0
    assert f"queued-{slots}" not in {label for _, _, _, label in runs(remote, "queued")}
    with pytest.raises(TaskCancelledError):
        waiting.result()


def test_cancelling_a_running_instance_stops_it_and_cancels_its_future(remote: Cluster) -> None:
    with Session():
        future = app.cancellable_task.instance().start(600)
        wait_for(lambda: future.progress > 0, what="the task to run")
        assert future.cancel() is True
        assert future.status == "cancelled"
        with pytest.raises(TaskCancelledError):
            future.result(timeout=1)
    # Leaving the session waited for the function to return; the server recorded it as cancelled.
    with TaskloomClient(remote.url, remote.token) as client:
        view = client.instance(future.instance_id)
    assert view["status"] == "cancelled" and view["result"] == "Cancelled"


def test_max_parallel_holds_across_the_two_workers(remote: Cluster) -> None:
    with Session():
        futures = [app.tracked.instance().start(f"limit-{i}", 0.15) for i in range(6)]
        assert [f.result(timeout=30) for f in futures] == [f"limit-{i}" for i in range(6)]
    records = runs(remote, "limit")
    assert len(records) == 12
    assert most_at_once(records) <= 2


def test_workers_enforce_max_parallel_themselves_for_instances_queued_over_http(remote: Cluster) -> None:
    session_id = uuid.uuid4().hex
    starts = [
        {
            "instance_id": uuid.uuid4().hex,
            "session_id": session_id,
            "task": "tracked",
            "target": f"{MODULE}:tracked",
            "max_parallel": 2,
            "args": [f"http-{i}", 0.15],
        }
        for i in range(6)
    ]
    assert httpx.post(f"{remote.url}/instances", json={"instances": starts}).status_code == 401
    with TaskloomClient(remote.url, remote.token) as client:
        assert client.start_instances(starts) == {"count": 6, "created": 6, "status": "queued"}
        assert client.start_instances(starts)["created"] == 0, "repeating a start queues nothing twice"
        updates = [u for batch in client.session_updates(session_id) for u in batch]
    outcomes = {u["instance_id"]: u for u in updates if u["kind"] == "completed"}
    assert [outcomes[s["instance_id"]]["data"]["result"] for s in starts] == [f"http-{i}" for i in range(6)]
    assert [u["seq"] for u in updates] == list(range(1, len(updates) + 1))
    records = runs(remote, "http")
    assert len(records) == 12
    assert most_at_once(records) == 2, "two ran at once (the limit), never three"


def test_a_task_at_its_limit_does_not_hold_up_other_tasks_queued_behind_it(remote: Cluster) -> None:
    session_id = uuid.uuid4().hex

    def start(task: str, label: str) -> dict[str, object]:
        target = f"{MODULE}:tracked"
        return {"instance_id": uuid.uuid4().hex, "session_id": session_id, "task": task, "target": target,
                "max_parallel": 1, "args": [label, 0.1]}  # fmt: skip

    serial = [start("tracked", f"head-{i}") for i in range(3 * WORKER_CONCURRENCY)]  # more than one claim takes
    other = start("tracked_wide", "head-other")
    with TaskloomClient(remote.url, remote.token) as client:
        client.start_instances([*serial, other])
        updates = [u for batch in client.session_updates(session_id) for u in batch]
    assert sum(u["kind"] == "completed" for u in updates) == len(serial) + 1
    starts = [label for event, _, _, label in sorted(runs(remote, "head"), key=lambda r: r[1]) if event == "start"]
    assert starts.index("head-other") <= 1, f"the other task waited behind the serial one: {starts}"
    assert most_at_once([r for r in runs(remote, "head") if r[3] != "head-other"]) == 1


def test_a_killed_workers_instance_runs_again_on_the_other_worker(remote: Cluster) -> None:
    name = f"crash-{remote.kind}"
    with Session():
        future = app.survivor.instance().start(name)
        pids_file = remote.probes / f"{name}.pids"

        def first_run() -> list[str] | None:
            return pids_file.read_text().split() if pids_file.exists() else None

        first = int(wait_for(first_run, what="a first run")[0])
        victim = next(w for w in remote.workers if w.pid == first)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        remote.workers.remove(victim)
        result = future.result(timeout=LEASE_SECONDS + 15)
    other = remote.workers[0].pid
    assert result == f"rerun by {other} after {first}"
    assert future.status == "completed"
    assert any("runs again" in r.message and r.level == "warning" for r in future.logs)
    remote.start_worker()  # two workers again for the next tests


def test_sigterm_lets_a_worker_finish_what_it_runs_before_it_exits(remote: Cluster) -> None:
    with Session():
        future = app.tracked_wide.instance().start(f"term-{remote.kind}", 0.5)
        started = wait_for(lambda: runs(remote, "term"), what="the instance to start")
        worker = next(w for w in remote.workers if w.pid == started[0][2])
        worker.send_signal(signal.SIGTERM)
        assert future.result(timeout=10) == f"term-{remote.kind}"
    assert worker.wait(10) == 0
    remote.workers.remove(worker)
    assert [event for event, *_ in runs(remote, "term")] == ["start", "end"], "it ran once, to its end"
    remote.start_worker()


# -- what crosses the wire ----------------------------------------------------------------------------
def test_arguments_that_are_not_json_fail_naming_the_task_and_argument(remote: Cluster) -> None:
    with Session() as session:
        with pytest.raises(TaskError, match=r"task 'process_data': argument 'data' .* a value of type set"):
            app.process_data.instance().start({1, 2})
        with pytest.raises(TaskError, match=r"argument 'data' .*JSON has no NaN"):
            app.process_data.instance().start(data=[float("nan")])
        assert session.instances == []  # refused at start(): nothing was admitted or sent


def test_async_tasks_policies_and_json_results_run_on_workers(remote: Cluster) -> None:
    with Session():
        doubled = app.async_double.instance().start(21)
        flaky = app.flaky.instance().start(f"flaky-{remote.kind}")
        typed = app.returns_types.instance().start()
        assert doubled.result(timeout=30) == 42
        assert doubled.status_message == "halfway"
        assert flaky.result(timeout=30) == "succeeded on attempt 3", "retries run on the worker"
        assert typed.result(timeout=30) == {"when": "2024-01-02T03:04:05+00:00", "pair": [1, 2]}


def test_on_limit_raise_answers_from_the_session(remote: Cluster) -> None:
    with Session(on_limit="raise"):
        futures = [app.tracked.instance().start(f"raise-{i}", 0.05) for i in range(2)]
        with pytest.raises(MaxInstancesReachedError, match="max_parallel"):
            app.tracked.instance().start("raise-2", 0.05)
        assert [f.result(timeout=30) for f in futures] == ["raise-0", "raise-1"]


def test_many_instances_in_one_session(remote: Cluster) -> None:
    with Session():
        futures = [app.trivial.instance().start(i) for i in range(300)]
        assert [f.result(timeout=30) for f in futures] == list(range(300))


def test_an_instance_no_worker_serves_warns_while_pending_then_fails_naming_the_command(
    remote: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from remoteapp import orphans

    from taskloom.backends import remote as remote_backend

    monkeypatch.setattr(remote_backend, "NO_WORKER_WAIT_SECONDS", 1.0)
    monkeypatch.setattr(remote_backend, "NO_WORKER_RETRY_SECONDS", 0.05)
    _reset_backends()
    with Session():
        future = orphans.unclaimed.instance().start(1)
        served = app.trivial.instance().start(2)  # the same batch: a task a worker serves is queued at once
        wait_for(lambda: future.logs, timeout=10, what="the no-worker warning")
        assert future.status == "pending"
        assert future.logs[0].level == "warning"
        message = future.logs[0].message
        assert "'remoteapp.orphans:unclaimed'" in message and "taskloom worker remoteapp.orphans" in message
        assert served.result(timeout=30) == 2
        with pytest.raises(TaskError) as failed:
            future.result(timeout=30)
    assert "taskloom worker remoteapp.orphans" in str(failed.value)
    assert "waited 1s" in str(failed.value)


def test_an_instance_waiting_for_a_worker_can_be_cancelled(remote: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    from remoteapp import orphans

    from taskloom.backends import remote as remote_backend

    monkeypatch.setattr(remote_backend, "NO_WORKER_RETRY_SECONDS", 0.05)
    _reset_backends()
    with Session():
        future = orphans.unclaimed.instance().start(1)
        wait_for(lambda: future.logs, timeout=10, what="the no-worker warning")
        future.cancel()
        with pytest.raises(TaskCancelledError):
            future.result(timeout=10)
    # Leaving the session returned: the cancelled instance freed its slot although it was never queued.


def test_an_instance_runs_once_a_worker_for_its_task_starts(remote: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    from remoteapp import orphans

    from taskloom.backends import remote as remote_backend

    monkeypatch.setattr(remote_backend, "NO_WORKER_WAIT_SECONDS", 60.0)
    monkeypatch.setattr(remote_backend, "NO_WORKER_RETRY_SECONDS", 0.05)
    _reset_backends()
    with Session():
        future = orphans.unclaimed.instance().start(41)
        wait_for(lambda: future.logs, timeout=10, what="the no-worker warning")
        log = remote.folder / f"orphans-worker-{time.monotonic_ns()}.log"
        with log.open("wb") as err:
            late = subprocess.Popen(
                [sys.executable, "-m", "taskloom", "worker", "remoteapp.orphans", *WORKER_OPTIONS],
                env=remote.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            assert future.result(timeout=30) == 41, log.read_text()
        finally:
            stop(late)


def test_a_secret_reaches_neither_the_client_nor_the_server_database(
    remote: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from remoteapp import secretive

    secret = f"sk-remote-{secrets.token_hex(8)}"
    with TaskloomClient(remote.url, token=remote.token) as client:
        client.set_secret(secretive.SECRET_NAME, secret)
    log = remote.folder / f"secretive-worker-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "remoteapp.secretive", *WORKER_OPTIONS],
            env=remote.env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for(lambda: "running tasks" in log.read_text() or worker.poll() is not None, what="the worker to start")
        assert worker.poll() is None, log.read_text()
        with Session():
            ok = secretive.leaks.instance().start(False)
            failing = secretive.leaks.instance().start(True)
            assert ok.result(timeout=30) == "token=***", log.read_text()
            with pytest.raises(PermissionError) as refused:
                failing.result(timeout=30)
    finally:
        stop(worker)
    assert str(refused.value) == "the API refused ***"
    assert all(secret not in note for note in refused.value.__notes__)
    for future in (ok, failing):
        assert [r.message for r in future.logs] == ["calling with ***"]
        assert future.logs[0].extra == {"key": "***"}
        assert future.status_message == "authenticated as ***"
    assert secret not in log.read_text()
    if remote.kind == "sqlite":
        database = Path(remote.env["TASKLOOM_DATABASE_URL"].removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
        assert secret.encode() not in raw
        assert b"***" in raw
