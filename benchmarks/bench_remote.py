"""1,000 trivial task instances through the remote backend, against raw ``SKIP LOCKED`` dequeues.

One run sets up a throwaway PostgreSQL server (``tests/pgserver.py``), a ``taskloom server`` process and two
worker processes (``taskloom worker``), then measures, alternately:

- **remote**: this process, with ``TASKLOOM_BACKEND=remote``, starts 1,000 instances of a trivial task in one
  session (``max_parallel=1000``, so none waits for a slot) and collects every result: start requests to the
  server, claims by the workers, runs, outcomes, and the session's update stream back to the futures.
- **floor**: two threads, each with its own psycopg connection to the same database, drain a 1,000-row queue
  table one row per transaction (``SELECT ... FOR UPDATE SKIP LOCKED`` and a completion ``UPDATE``): what a
  minimal queue on the same database costs for the same number of items.

Both sides are warm (one run each before measuring). The figures are the best of the runs; the target is
at most 1.0 s end to end for the remote side. The floor pays one transaction per item, as a minimal queue
does; taskloom batches starts, claims, outcomes and the updates it streams back, so it can beat the floor.

The task lives in this file, so the workers import it as module ``bench_remote`` (a task in a script run as
``python script.py`` is named after the script).

Run: ``.venv/bin/python benchmarks/bench_remote.py``
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from taskloom import Session, task

INSTANCES = 1000
REPEATS = 5
TARGET_SECONDS = 1.0
WORKERS = 2
WORKER_CONCURRENCY = 100
HERE = Path(__file__).resolve().parent


@task(max_parallel=INSTANCES)
def trivial(i: int) -> int:
    return i


def remote_run() -> float:
    with Session(name="bench"):
        start = time.perf_counter()
        futures = [trivial.instance().start(i) for i in range(INSTANCES)]
        assert [f.result(timeout=60) for f in futures] == list(range(INSTANCES))
        return time.perf_counter() - start


def floor_run(url: str) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_queue (id BIGSERIAL PRIMARY KEY, status TEXT NOT NULL, "
            "payload INTEGER NOT NULL, result INTEGER)"
        )
        conn.execute("TRUNCATE bench_queue")
        conn.execute(
            "INSERT INTO bench_queue (status, payload) SELECT 'queued', i FROM generate_series(0, %s) AS i",
            (INSTANCES - 1,),
        )
    ready = threading.Barrier(WORKERS + 1)
    done: list[int] = []

    def worker() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            count = 0
            ready.wait()
            while True:
                with conn.transaction():
                    row = conn.execute(
                        "SELECT id, payload FROM bench_queue WHERE status = 'queued' ORDER BY id LIMIT 1 "
                        "FOR UPDATE SKIP LOCKED"
                    ).fetchone()
                    if row is None:
                        break
                    conn.execute("UPDATE bench_queue SET status = 'done', result = %s WHERE id = %s", (row[1], row[0]))
                    count += 1
            done.append(count)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    assert sum(done) == INSTANCES, done
    return elapsed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise SystemExit(f"bench_remote: timed out waiting for {what}")


def main() -> None:
    sys.path.insert(0, str(HERE.parent / "tests"))
    import httpx
    from pgserver import running_postgres  # type: ignore[import-not-found]  # tests/, on sys.path above

    with running_postgres() as pg, tempfile.TemporaryDirectory(prefix="taskloom-bench-") as folder:
        url = pg.url()
        token = secrets.token_urlsafe(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
        env.update(
            TASKLOOM_DATABASE_URL=url,
            TASKLOOM_HOME=folder,
            TASKLOOM_API_TOKEN=token,
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        )
        port = free_port()
        logs = Path(folder) / "processes.log"
        with logs.open("wb") as log:
            processes = [
                subprocess.Popen(
                    [sys.executable, "-m", "taskloom", "server", "--port", str(port), "--log-level", "warning"],
                    env=env,
                    stdout=log,
                    stderr=log,
                )
            ]
            server_url = f"http://127.0.0.1:{port}"

            def server_up() -> bool:
                try:
                    return httpx.get(f"{server_url}/health", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(server_up, "the server")
            worker_options = ("--concurrency", str(WORKER_CONCURRENCY))
            for _ in range(WORKERS):
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "taskloom", "worker", "bench_remote", *worker_options],
                        env=env,
                        stdout=log,
                        stderr=log,
                    )
                )
        wait_until(lambda: logs.read_text().count("running tasks") >= WORKERS, "the workers")
        os.environ.update(TASKLOOM_BACKEND="remote", TASKLOOM_SERVER_URL=server_url, TASKLOOM_API_TOKEN=token)
        try:
            remote_run()  # warm up: connections open, threads started, code paths hot
            floor_run(url)
            remote_times, floor_times = [], []
            for _ in range(REPEATS):
                remote_times.append(remote_run())
                floor_times.append(floor_run(url))
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
    remote, floor = min(remote_times), min(floor_times)
    print(f"raw SKIP LOCKED: {INSTANCES} dequeues + completions by {WORKERS} workers  {floor * 1e3:8.1f} ms")
    print(f"remote backend: {INSTANCES} instance().start + result, {WORKERS} workers  {remote * 1e3:8.1f} ms")
    verdict = "ok" if remote <= TARGET_SECONDS else "OVER TARGET"
    print(f"ratio {remote / floor:4.2f}x the raw dequeues")
    print(f"end to end {remote:.3f} s (target <= {TARGET_SECONDS:g} s: {verdict})")


if __name__ == "__main__":
    main()
