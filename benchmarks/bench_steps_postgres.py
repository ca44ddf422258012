"""Durable steps on PostgreSQL against the floor the same server sets, measured in the same run.

A throwaway server (``tests/pgserver.py``; like the test suite's, it runs with ``fsync=off`` and
``synchronous_commit=off``, so what is measured is round trips and server work, not the disk).

- Floor (issue 12's): one bare ``INSERT`` and ``COMMIT`` per step on one connection, as psycopg runs it
  by default (``BEGIN``, the INSERT, ``COMMIT``: three round trips); the target is 1.3x of it. Also the
  stricter floor: the INSERT alone in autocommit (its own transaction: one round trip, one commit), the
  least any durable engine on this server pays per step.
- taskloom: a workflow of 1,000 sequential durable sync steps, each written under the run's lease.
- Round trips per step: every message the client ends a round trip with (an extended-protocol
  ``Sync`` or a simple ``Query``), counted by libpq's own protocol trace on every connection the
  store opens, over one more run of the workflow (traced runs are not timed).

Run: ``.venv/bin/python benchmarks/bench_steps_postgres.py [--repeats 9]``: the best of N rounds per
figure, and the ratios as the median of the rounds' own (each round measures the floors and taskloom
back to back).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test suite's throwaway PostgreSQL

STEPS = 1000
#: the issue's target: taskloom's step at most this many times the floor
TARGET_RATIO = 1.3


def floor_per_step(url: str, *, autocommit: bool) -> float:
    """Seconds per bare INSERT+COMMIT of a step-sized row on one connection: as psycopg runs it by
    default (``BEGIN``, the INSERT, ``COMMIT``: three round trips), or in autocommit (one)."""
    with psycopg.connect(url, autocommit=True) as conn:
        table = f"floor_{time.perf_counter_ns()}"
        conn.execute(
            f"CREATE TABLE {table} (seq BIGSERIAL PRIMARY KEY, execution_id TEXT, type TEXT, step_id TEXT, "
            "value BYTEA, ts DOUBLE PRECISION)"
        )
        conn.autocommit = autocommit
        insert = f"INSERT INTO {table} (execution_id, type, step_id, value, ts) VALUES (%s, %s, %s, %s, %s)"
        start = time.perf_counter()
        for i in range(STEPS):
            conn.execute(insert, ("e", "step_completed", str(i), b"\x80\x05K\x01.", time.time()))
            if not autocommit:
                conn.commit()
        elapsed = time.perf_counter() - start
        conn.autocommit = True
        conn.execute(f"DROP TABLE {table}")
    return elapsed / STEPS


class ProtocolTrace:
    """Every psycopg connection opened while installed (the store's pool included), traced on demand.

    Tracing only while counting keeps libpq's trace writes out of the timed runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._original = psycopg.Connection.connect
        self._conns: list[psycopg.Connection[Any]] = []
        self._out: IO[str] | None = None
        tracer = self

        def connect(cls: type[psycopg.Connection[Any]], *args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
            conn = tracer._original.__func__(cls, *args, **kwargs)  # type: ignore[attr-defined]
            tracer._conns.append(conn)
            if tracer._out is not None:
                tracer._trace(conn)
            return conn

        psycopg.Connection.connect = classmethod(connect)  # type: ignore[method-assign, assignment]
        psycopg.connect = psycopg.Connection.connect  # the module's alias was bound at import

    def _trace(self, conn: psycopg.Connection[Any]) -> None:
        assert self._out is not None
        conn.pgconn.trace(self._out.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)

    @contextmanager
    def counting(self) -> Iterator[None]:
        self._out = self.path.open("w")
        for conn in self._conns:
            if not conn.closed:
                self._trace(conn)
        try:
            yield
        finally:
            for conn in self._conns:
                if not conn.closed:
                    conn.pgconn.untrace()
            self._out.close()
            self._out = None


def time_in_writes(run: Callable[[], float]) -> tuple[float, float]:
    """Seconds per step of ``run``, and of them inside the store's ``append_events`` (the step's write)."""
    from taskloom.store.postgres import PostgresStore

    original = PostgresStore.append_events
    spent = [0.0]

    def timed_append(self: PostgresStore, *args: Any, **kwargs: Any) -> int:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    PostgresStore.append_events = timed_append  # type: ignore[method-assign]
    try:
        per_step = run()
    finally:
        PostgresStore.append_events = original  # type: ignore[method-assign]
    return per_step, spent[0] / STEPS


def round_trips(trace: Path) -> int:
    """Client messages that wait for the server's answer: ``Sync`` (extended protocol) and ``Query``."""
    count = 0
    for line in trace.read_text(errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) > 2 and fields[0] == "F" and fields[2].split(" ")[0] in ("Sync", "Query"):
            count += 1
    return count


def server_cpu_seconds(data_dir: Path) -> float:
    """CPU time (user + system) spent so far by the server: its postmaster and every process it started
    that still runs (backends, WAL writer, ...), read from /proc. Subtracted over a run, it is the
    server's own work for that run, which the client's clock mixes with round trips and with the load
    of a shared machine (how the foreign key of events was judged: store/sql/postgres/016)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(entry) == postmaster or int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="rounds (default 9)")
    args = parser.parse_args()
    from pgserver import find_bindir, running_postgres  # type: ignore[import-not-found]

    if find_bindir() is None:
        print("postgres: skipped, no PostgreSQL server binaries (Debian: apt-get install postgresql)")
        return
    with tempfile.TemporaryDirectory() as tmp, running_postgres() as server:
        url = server.url()
        os.environ["TASKLOOM_DATABASE_URL"] = url
        os.environ["TASKLOOM_HOME"] = tmp
        tracer = ProtocolTrace(Path(tmp) / "trace.txt")  # before any store opens a connection
        from taskloom import task, workflow

        @task
        def sync_step(i: int) -> int:
            return i

        @workflow
        async def sequential(ctx):  # type: ignore[no-untyped-def]
            for i in range(STEPS):
                await sync_step(i)

        def timed() -> float:
            start = time.perf_counter()
            ctx = sequential.run()
            assert ctx.has_succeeded, ctx.output
            return (time.perf_counter() - start) / STEPS

        timed()  # warm: the store's connections, prepared statements, the server's caches
        # Interleaved, each round's ratios taken against the floors of that round, and the median round
        # reported: the load of a shared machine drifts by more than the differences measured.
        rounds = []
        for _ in range(args.repeats):
            rounds.append((floor_per_step(url, autocommit=False), floor_per_step(url, autocommit=True), timed()))
        floor, strict, per_step = (min(figures) for figures in zip(*rounds, strict=True))
        ratio = statistics.median(step / commit for commit, _, step in rounds)
        strict_ratio = statistics.median(step / alone for _, alone, step in rounds)
        with tracer.counting():
            timed()
        trips = round_trips(tracer.path) / STEPS
        whole, writing = time_in_writes(timed)
        before = server_cpu_seconds(server.data_dir)
        timed()
        server_cpu = (server_cpu_seconds(server.data_dir) - before) / STEPS
        print(f"floor: INSERT + COMMIT (BEGIN, INSERT, COMMIT: 3 round trips) {floor * 1e6:8.1f} us/step")
        print(f"floor: INSERT alone in autocommit (1 round trip)           {strict * 1e6:8.1f} us/step")
        print(f"taskloom {STEPS} sequential durable steps                  {per_step * 1e6:8.1f} us/step")
        print(
            f"  median over {args.repeats} rounds: {ratio:4.2f}x the INSERT+COMMIT floor (target <= {TARGET_RATIO}x), "
            f"{strict_ratio:4.2f}x the 1-round-trip floor"
        )
        print(f"SQL round trips per step (libpq trace of one more run)     {trips:8.2f}")
        print(
            f"one more run: {whole * 1e6:.1f} us/step, of which {writing * 1e6:.1f} in the store's append_events "
            f"(the step's write), {(whole - writing) * 1e6:.1f} in the rest of the engine"
        )
        print(f"server CPU per step, one more run (all its processes, /proc) {server_cpu * 1e6:8.1f} us/step")


if __name__ == "__main__":
    main()
