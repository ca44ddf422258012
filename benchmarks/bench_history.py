"""A store with 1,000,000 executions: listing, filtering, status, events and a claim, against the bare query.

For each store (SQLite, and a throwaway PostgreSQL from ``tests/pgserver.py`` when its binaries are
installed) the benchmark writes ``--executions`` executions (every status, seven workflows, real encoded
inputs and outputs) and ``--events-per`` events for each, straight into the tables in bulk, then times each
call that ``taskloom list``/``status``/``events``, the dashboard and a worker make through the store's
API, alternating with the same statement run bare on a raw connection to the same database: the floor
that the database and its indexes alone cost. It prints the median of each, their ratio (target: at most
1.5x), and the file or database size per million events.

Run: ``.venv/bin/python benchmarks/bench_history.py`` (``--executions 1000000 --events-per 50`` for the
50,000,000-event store of issue 13: about 10 minutes and 6 GB of disk on SQLite).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taskloom import serde
from taskloom.store import open_store
from taskloom.store.base import Store
from taskloom.store.sqlite import _EVENTS_OF as EVENTS_OF
from taskloom.store.sqlite import SEQ_BITS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test suite's throwaway PostgreSQL

STATUSES = ("completed", "completed", "completed", "completed", "failed", "cancelled", "paused", "queued")
WORKFLOWS = [f"workflow_{n}" for n in range(7)]
PAGE = 50
REPEATS = 41
TARGET = 1.5
COLUMNS = (
    "id, workflow, status, input, output, created_at, updated_at, target, lease_owner, lease_expires_at, "
    "crashes, wake_at"
)
ORDER = f"ORDER BY created_at DESC, id LIMIT {PAGE}"


def rows(
    executions: int, events_per: int, statuses: tuple[str, ...] = STATUSES
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Executions and their events in chunks of 10,000 executions, oldest first (one a second, ending now)."""
    start = time.time() - executions
    output = serde.dumps({"charged": 12.5, "receipt": "R-000000"}, what="output")
    step_value = serde.dumps({"rows": 120, "file": "part-0001.parquet"}, what="output")
    data = '{"attempt":1}'
    chunk: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    for n in range(executions):
        execution_id = f"{n:08d}-{secrets.token_hex(6)}"
        status = statuses[n % len(statuses)]
        created = start + n
        workflow = WORKFLOWS[n % len(WORKFLOWS)]
        chunk.append(
            (
                execution_id,
                workflow,
                f"app.flows:{workflow}",
                status,
                serde.dumps({"order": n}, what="input"),
                output if status == "completed" else None,
                created,
                created + 1,
            )
        )
        for k in range(events_per):
            kind = "step_started" if k % 2 == 0 else "step_completed"
            events.append(
                (execution_id, kind, str(k // 2), f"step_{k // 2}", step_value if k % 2 else None, data, created)
            )
        if len(chunk) == 10_000:
            yield chunk, events
            chunk, events = [], []
    if chunk:
        yield chunk, events


def fill_sqlite(path: Path, executions: int, events_per: int, statuses: tuple[str, ...] = STATUSES) -> None:
    """As the store lays them out (schema 17): execution number n's events take the seqs n * 2**24 + 1, ..."""
    open_store(f"sqlite:///{path}").close()
    number = 0
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA synchronous = OFF")
        for chunk, events in rows(executions, events_per, statuses):
            numbers = {row[0]: number + i for i, row in enumerate(chunk, 1)}
            number += len(chunk)
            db.executemany(
                "INSERT INTO executions (id, workflow, target, status, input, output, created_at, updated_at, number) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*row, numbers[row[0]]) for row in chunk],
            )
            db.executemany(
                "INSERT INTO events (seq, execution_id, type, step_id, name, value, data, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(numbers[e[0]] * 2**SEQ_BITS + k % events_per + 1, *e) for k, e in enumerate(events)],
            )
        db.execute("ANALYZE")


def fill_postgres(url: str, executions: int, events_per: int, statuses: tuple[str, ...] = STATUSES) -> None:
    import psycopg

    open_store(url).close()
    with psycopg.connect(url) as db:
        for chunk, events in rows(executions, events_per, statuses):
            with db.cursor() as cur:
                with cur.copy(
                    "COPY executions (id, workflow, target, status, input, output, created_at, updated_at) FROM STDIN"
                ) as copy:
                    for row in chunk:
                        copy.write_row(row)
                with cur.copy("COPY events (execution_id, type, step_id, name, value, data, ts) FROM STDIN") as copy:
                    for row in events:
                        copy.write_row(row)
            db.commit()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM ANALYZE")


def measure(name: str, call: Callable[[], Any], bare: Callable[[], Any]) -> tuple[str, float, float]:
    """Median seconds of ``call`` and of ``bare``, alternated so that noise hits both alike."""
    call(), bare()  # warm: the pages both will read are in cache for both
    timed: list[float] = []
    floor: list[float] = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        call()
        timed.append(time.perf_counter() - started)
        started = time.perf_counter()
        bare()
        floor.append(time.perf_counter() - started)
    return name, statistics.median(timed), statistics.median(floor)


def cases(
    store: Store, run_bare: Callable[[str, tuple[Any, ...]], Any], mark: str, sample: str, middle: tuple[float, str]
) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(name, the store's call, the bare statement) for each operation measured."""
    m = mark
    created, middle_id = middle
    return [
        (
            "list: first page",
            lambda: store.list_executions(limit=PAGE),
            lambda: run_bare(f"SELECT {COLUMNS} FROM executions {ORDER}", ()),
        ),
        (
            "list: status=failed",
            lambda: store.list_executions(status="failed", limit=PAGE),
            lambda: run_bare(f"SELECT {COLUMNS} FROM executions WHERE status = {m} {ORDER}", ("failed",)),
        ),
        (
            "list: workflow=workflow_3",
            lambda: store.list_executions(workflow="workflow_3", limit=PAGE),
            lambda: run_bare(f"SELECT {COLUMNS} FROM executions WHERE workflow = {m} {ORDER}", ("workflow_3",)),
        ),
        (
            "list: workflow and status",
            lambda: store.list_executions(workflow="workflow_3", status="failed", limit=PAGE),
            lambda: run_bare(
                f"SELECT {COLUMNS} FROM executions WHERE workflow = {m} AND status = {m} {ORDER}",
                ("workflow_3", "failed"),
            ),
        ),
        (
            "list: page in the middle (cursor)",
            lambda: store.list_executions(limit=PAGE, after=middle),
            lambda: run_bare(
                f"SELECT {COLUMNS} FROM executions WHERE created_at <= {m} AND (created_at < {m} OR id > {m}) {ORDER}",
                (created, created, middle_id),
            ),
        ),
        (
            "status of one execution",
            lambda: store.get_execution(sample),
            lambda: run_bare(f"SELECT {COLUMNS} FROM executions WHERE id = {m}", (sample,)),
        ),
        (
            "events of one execution",
            lambda: store.load_events(sample),
            lambda: run_bare(
                # SQLite: the execution's own range of seqs (schema 17); PostgreSQL: its index
                f"SELECT ev.seq, ev.type, ev.ts, ev.step_id, ev.name, ev.value, ev.data FROM {EVENTS_OF} "
                "ORDER BY ev.seq"
                if m == "?"
                else f"SELECT seq, type, ts, step_id, name, value, data FROM events WHERE execution_id = {m} "
                f"AND seq > {m} ORDER BY seq",
                (sample, 0),
            ),
        ),
        (
            "a worker's claim (nothing due)",
            lambda: store.claim_next_execution("bench-worker", 10, ["no_such_workflow"]),
            lambda: run_bare(
                f"SELECT id FROM executions WHERE workflow = {m} AND status = 'queued' ORDER BY created_at LIMIT 1",
                ("no_such_workflow",),
                transaction=True,
            ),
        ),
    ]


#: the calls the target holds for (issue 13: list, filter, status); events and the claim are shown as well
TARGETED = ("list:", "status")


@contextmanager
def sqlite_case(
    folder: Path, executions: int, events_per: int
) -> Iterator[tuple[Store, Callable[..., Any], str, float]]:
    path = folder / "history.db"
    fill_sqlite(path, executions, events_per)
    store = open_store(f"sqlite:///{path}")
    raw = sqlite3.connect(path, isolation_level=None)

    def bare(sql: str, params: tuple[Any, ...], transaction: bool = False) -> Any:
        if not transaction:
            return raw.execute(sql, params).fetchall()
        raw.execute("BEGIN IMMEDIATE")  # a claim is a write transaction: the floor is one too
        try:
            return raw.execute(sql, params).fetchall()
        finally:
            raw.execute("COMMIT")

    try:
        size = sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("history.db"))
        yield store, bare, "?", size
    finally:
        raw.close()
        store.close()


@contextmanager
def postgres_case(executions: int, events_per: int) -> Iterator[tuple[Store, Callable[..., Any], str, float]]:
    import psycopg
    from pgserver import running_postgres  # type: ignore[import-not-found]

    with running_postgres() as server:
        url = server.url()
        fill_postgres(url, executions, events_per)
        store = open_store(url)
        raw = psycopg.connect(url, autocommit=True)

        def bare(sql: str, params: tuple[Any, ...], transaction: bool = False) -> Any:
            if not transaction:
                return raw.execute(sql, params).fetchall()
            with raw.transaction():  # a claim is a write transaction, its rows locked: the floor is one too
                return raw.execute(sql + " FOR UPDATE SKIP LOCKED", params).fetchall()

        try:
            size = raw.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
            yield store, bare, "%s", float(size)
        finally:
            raw.close()
            store.close()


def report(
    kind: str, store: Store, run_bare: Callable[..., Any], mark: str, size: float, executions: int, events_per: int
) -> bool:
    sample_row = run_bare(
        f"SELECT id FROM executions WHERE id >= {mark} ORDER BY id LIMIT 1", (f"{executions // 3:08d}",)
    )
    sample = str(sample_row[0][0])
    middle_row = run_bare(
        f"SELECT created_at, id FROM executions WHERE id >= {mark} ORDER BY id LIMIT 1", (f"{executions // 2:08d}",)
    )
    middle = (float(middle_row[0][0]), str(middle_row[0][1]))
    events = executions * events_per
    print(
        f"\n{kind}: {executions:,} executions, {events:,} events, {size / 2**30:.2f} GiB "
        f"({size / max(events, 1) * 1e6 / 2**20:.0f} MiB per million events, indexes included)"
    )
    ok = True
    for name, call, bare in cases(store, run_bare, mark, sample, middle):
        name, timed, floor = measure(name, call, bare)
        ratio = timed / floor
        if name.startswith(TARGETED):
            ok = ok and ratio <= TARGET
        print(f"  {name:36s} {timed * 1e3:8.3f} ms   bare {floor * 1e3:8.3f} ms   {ratio:5.2f}x")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--events-per", type=int, default=10, help="events per execution (default 10)")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    ok = True
    if args.store in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(dir=os.environ.get("TASKLOOM_BENCH_DIR")) as tmp:
            started = time.perf_counter()
            with sqlite_case(Path(tmp), args.executions, args.events_per) as (store, bare, mark, size):
                print(f"sqlite: filled in {time.perf_counter() - started:.0f} s")
                ok = report("sqlite", store, bare, mark, size, args.executions, args.events_per) and ok
    if args.store in ("postgres", "both"):
        from pgserver import find_bindir  # type: ignore[import-not-found]

        if find_bindir() is None:
            print("postgres: skipped, no PostgreSQL server binaries (Debian: apt-get install postgresql)")
        else:
            started = time.perf_counter()
            with postgres_case(args.executions, args.events_per) as (store, bare, mark, size):
                print(f"postgres: filled in {time.perf_counter() - started:.0f} s")
                ok = report("postgres", store, bare, mark, size, args.executions, args.events_per) and ok
    print(f"\ntarget: every call at most {TARGET}x its bare query: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
