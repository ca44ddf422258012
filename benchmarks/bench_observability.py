"""Per-step cost of logs and traces, off and on, against the plain step cost measured in the same run.

Floor: a workflow of 1,000 sequential durable sync steps on SQLite with tracing off and no logging (as
shipped), and the same with the step watch taken out of the driver (``tracing.step`` replaced by a bare
context manager). Then:

- off: the step watch alone (the contextvar set and reset per step), timed in a tight loop;
- logs on: each step logs one INFO record through the user's own logger to a formatting handler
  (``%(execution_id)s %(step_id)s %(task)s``), and that record's cost with and without taskloom's record
  factory;
- traces on: ``taskloom.tracing.enable()`` with the OpenTelemetry SDK, spans handed to an exporter that
  drops them (the SDK's own cost, not an exporter's I/O).

Rounds alternate between the variants and the best of each is kept, so drift of a shared machine hits all
alike. Run: ``.venv/bin/python benchmarks/bench_observability.py`` (``--rounds N``, default 5).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

STEPS = 1000
WATCHES = 100_000
RECORDS = 20_000


def per_step(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    ctx = run()
    elapsed = time.perf_counter() - start
    assert ctx.has_succeeded, ctx.output
    return elapsed / STEPS


@contextlib.contextmanager
def without_step_watch() -> Iterator[None]:
    """The driver as it would be without the hook: ``with tracing.step(...)`` does nothing."""
    from taskloom import tracing

    real = tracing.step
    tracing.step = lambda *args: contextlib.nullcontext()  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        tracing.step = real  # type: ignore[misc]


ORIGIN_FORMAT = "%(execution_id)s %(step_id)s %(task)s %(name)s %(message)s"
PLAIN_FORMAT = "%(name)s %(message)s"


@contextlib.contextmanager
def logging_to_a_formatter(logger: logging.Logger, format: str = ORIGIN_FORMAT) -> Iterator[None]:
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter(format))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


@contextlib.contextmanager
def tracing_on() -> Iterator[None]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from taskloom import tracing

    class Dropping(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Dropping()))
    tracing.enable(provider)
    try:
        yield
    finally:
        tracing.disable()
        provider.shutdown()


def watch_cost() -> float:
    """Seconds per ``with tracing.step(...)`` with tracing off, in a tight loop (no workflow around it)."""
    from taskloom import tracing

    start = time.perf_counter()
    for _ in range(WATCHES):
        with tracing.step("e", "1", "t"):
            pass
    return (time.perf_counter() - start) / WATCHES


def record_cost(logger: logging.Logger, factory: bool) -> float:
    """Seconds per INFO record made and formatted (a format without the fields, so that both can run it),
    with taskloom's record factory or the plain one."""
    from taskloom import logs

    taskloom_factory = logging.getLogRecordFactory()
    if not factory:
        assert isinstance(taskloom_factory, logs._OriginRecordFactory)
        logging.setLogRecordFactory(taskloom_factory.previous)
    try:
        with logging_to_a_formatter(logger, PLAIN_FORMAT):
            start = time.perf_counter()
            for i in range(RECORDS):
                logger.info("record %d", i)
            return (time.perf_counter() - start) / RECORDS
    finally:
        logging.setLogRecordFactory(taskloom_factory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["TASKLOOM_DATABASE_URL"] = f"sqlite:///{folder / 'bench.db'}"
        os.environ["TASKLOOM_HOME"] = str(folder)
        from taskloom import task, workflow

        user_log = logging.getLogger("bench.user")

        @task
        def quiet(i: int) -> int:
            return i

        @task
        def chatty(i: int) -> int:
            user_log.info("step %d", i)
            return i

        @workflow
        async def quiet_steps(ctx):  # type: ignore[no-untyped-def]
            for i in range(STEPS):
                await quiet(i)

        @workflow
        async def chatty_steps(ctx):  # type: ignore[no-untyped-def]
            for i in range(STEPS):
                await chatty(i)

        def unhooked() -> float:
            with without_step_watch():
                return per_step(quiet_steps.run)

        def logged() -> float:
            with logging_to_a_formatter(user_log):
                return per_step(chatty_steps.run)

        def traced() -> float:
            with tracing_on():
                return per_step(quiet_steps.run)

        variants: dict[str, Callable[[], float]] = {
            "plain": lambda: per_step(quiet_steps.run),
            "unhooked": unhooked,
            "logged": logged,
            "traced": traced,
        }
        best = dict.fromkeys(variants, float("inf"))
        per_step(quiet_steps.run)  # warm up: store created, code paths imported
        for _ in range(rounds):
            for name, run in variants.items():
                best[name] = min(best[name], run())
        watch = min(watch_cost() for _ in range(rounds))
        with_factory = without_factory = float("inf")
        for _ in range(rounds):  # alternating, as above
            with_factory = min(with_factory, record_cost(user_log, factory=True))
            without_factory = min(without_factory, record_cost(user_log, factory=False))

    plain = best["plain"]
    print(f"python {sys.version.split()[0]}, {STEPS} sequential sync steps on SQLite, best of {rounds} rounds")
    print(f"floor: plain step (tracing off, no log)        {plain * 1e6:8.1f} us/step")
    unhooked = best["unhooked"]
    print(
        f"  same without the step watch in the driver    {unhooked * 1e6:8.1f} us/step "
        f"(plain/unhooked {plain / unhooked:5.3f}x)"
    )
    print(
        f"off: the step watch alone (tight loop)         {watch * 1e9:8.0f} ns/step "
        f"({watch / plain * 100:5.2f} % of a plain step; target: nothing measurable)"
    )
    print(
        f"logs on: each step logs one formatted record   {best['logged'] * 1e6:8.1f} us/step "
        f"({best['logged'] / plain:5.3f}x floor)"
    )
    print(
        f"  one record, with / without the factory       {with_factory * 1e9:8.0f} / {without_factory * 1e9:.0f} ns "
        f"({with_factory / without_factory:5.3f}x; made only for records that pass the logger's level)"
    )
    print(
        f"traces on: a span per step (SDK, no export)    {best['traced'] * 1e6:8.1f} us/step "
        f"({best['traced'] / plain:5.3f}x floor)"
    )


if __name__ == "__main__":
    main()
