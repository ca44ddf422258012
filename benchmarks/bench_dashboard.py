"""The dashboard's executions page with 100,000 executions in a SQLite store, against the bare SELECT.

The store gets 100,000 executions written straight into its file (one ``executemany``, with real encoded
inputs and outputs, seven workflows, every status), then a real ``taskloom server`` serves it on loopback.
For each request the executions page makes (the first page, a status filter, a workflow filter, a page
deep in the list through its cursor, an id search) the benchmark times the HTTP call, over a kept-alive
connection with the token, as the page makes it, and the bare ``SELECT`` of that page run with
``sqlite3`` on the same file in the same run: the floor, what the database alone costs. Calls alternate
with SELECTs so that machine noise hits both alike. It prints the median and worst of each, their ratio,
and the query plan (which index each SELECT reads); it fails (exit 1) if any page's worst answer takes
300 ms or more, the target of issue 9.

Run: ``.venv/bin/python benchmarks/bench_dashboard.py``
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from taskloom import serde
from taskloom.store import open_store

EXECUTIONS = 100_000
PAGE = 50  # the dashboard's page size
REPEATS = 30
TARGET_MS = 300.0
STATUSES = ("completed", "completed", "completed", "failed", "cancelled", "paused", "running", "queued")
WORKFLOWS = [f"workflow_{n}" for n in range(7)]
COLUMNS = "id, workflow, status, input, output, created_at, updated_at, target, lease_owner, lease_expires_at, crashes"


def fill(path: Path) -> list[str]:
    """100,000 executions straight into the store's file, oldest first; returns their ids in that order."""
    open_store(f"sqlite:///{path}").close()  # the schema, through the store's own migrations
    start = time.time() - EXECUTIONS
    rows, ids = [], []
    output = serde.dumps({"charged": 12.5, "receipt": "R-000000"}, what="output")
    failure = serde.dumps_error(LookupError("no stock left"), what="output")
    for n in range(EXECUTIONS):
        execution_id = secrets.token_hex(16)
        status = STATUSES[n % len(STATUSES)]
        value = output if status == "completed" else failure if status == "failed" else None
        created = start + n + (n % 3) * 0.001
        ids.append(execution_id)
        rows.append(
            (
                execution_id,
                WORKFLOWS[n % len(WORKFLOWS)],
                "app.flows:" + WORKFLOWS[n % len(WORKFLOWS)],
                status,
                serde.dumps({"order": f"A-{n}", "amount": n % 500, "lines": list(range(n % 5))}, what="input"),
                value,
                created,
                created + 1,
            )
        )
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO executions (id, workflow, target, status, input, output, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return ids


def start_server(path: Path, home: Path, token: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": f"sqlite:///{path}",
        "TASKLOOM_HOME": str(home),
        "TASKLOOM_API_TOKEN": token,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "server", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the server did not answer /health within 30 s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pages(ids: list[str], db: sqlite3.Connection) -> list[tuple[str, dict[str, str], str, tuple[object, ...]]]:
    """(name, the page's query parameters, the bare SELECT, its parameters) of each request measured."""
    order = f"ORDER BY created_at DESC, id LIMIT {PAGE}"
    middle = ids[EXECUTIONS // 2]
    (created,) = db.execute("SELECT created_at FROM executions WHERE id = ?", (middle,)).fetchone()
    cursor = base64.urlsafe_b64encode(json.dumps([created, middle]).encode()).decode().rstrip("=")
    prefix = ids[1234][:4]
    return [
        ("first page", {}, f"SELECT {COLUMNS} FROM executions {order}", ()),
        (
            "status=failed",
            {"status": "failed"},
            f"SELECT {COLUMNS} FROM executions WHERE status = ? {order}",
            ("failed",),
        ),
        (
            "workflow=workflow_3",
            {"workflow": "workflow_3"},
            f"SELECT {COLUMNS} FROM executions WHERE workflow = ? {order}",
            ("workflow_3",),
        ),
        (
            "page 1,000 (cursor)",
            {"cursor": cursor},
            f"SELECT {COLUMNS} FROM executions WHERE created_at <= ? AND (created_at < ? OR id > ?) {order}",
            (created, created, middle),
        ),
        (
            f"id search {prefix!r}",
            {"id_prefix": prefix},
            f"SELECT {COLUMNS} FROM executions WHERE id >= ? AND id < ? {order}",
            (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)),
        ),
    ]


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    path = folder / "taskloom.db"
    began = time.perf_counter()
    ids = fill(path)
    print(f"{EXECUTIONS:,} executions written in {time.perf_counter() - began:.1f} s ({path})")
    token = secrets.token_urlsafe(24)
    process, url = start_server(path, folder / "home", token)
    failed = False
    try:
        db = sqlite3.connect(path)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            print(f"{'request':<24}{'HTTP median':>12}{'worst':>9}{'SELECT median':>15}{'worst':>9}{'ratio':>8}")
            for name, params, sql, args in pages(ids, db):
                api_times, select_times = [], []
                for _ in range(REPEATS + 1):  # the first of each is a warm-up, left out
                    start = time.perf_counter()
                    response = client.get("/executions", params={"limit": str(PAGE), **params})
                    api_times.append(time.perf_counter() - start)
                    assert response.status_code == 200, response.text
                    start = time.perf_counter()
                    rows = db.execute(sql, args).fetchall()
                    select_times.append(time.perf_counter() - start)
                    assert len(response.json()["executions"]) == len(rows)
                api_ms = [t * 1e3 for t in api_times[1:]]
                select_ms = [t * 1e3 for t in select_times[1:]]
                median = statistics.median(api_ms)
                ratio = median / statistics.median(select_ms)
                print(
                    f"{name:<24}{median:>9.2f} ms{max(api_ms):>6.1f} ms"
                    f"{statistics.median(select_ms):>12.2f} ms{max(select_ms):>6.1f} ms{ratio:>7.1f}x"
                )
                plan = "; ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
                print(f"{'':<24}plan: {plan}")
                failed |= max(api_ms) >= TARGET_MS
        db.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    verdict = "FAILED" if failed else "met"
    print(f"target: every page answers in under {TARGET_MS:g} ms, worst of {REPEATS}: {verdict}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
