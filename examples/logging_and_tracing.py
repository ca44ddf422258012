"""Logs and traces: which execution, step and task wrote each line, and a span per execution and step.

Every log record made while a workflow runs carries ``execution_id``, ``workflow``, ``step_id`` and
``task`` (and ``instance_id`` in a task instance): records of ``ctx.logger``, of ``taskloom.logger``, and
of the program's own ``logging.getLogger(__name__)``, so a format string can name them. Outside any
execution they are None, so the same format works for every record.

With the OpenTelemetry SDK installed (``pip install 'taskloom[otel]' opentelemetry-sdk``), the program
configures its tracer provider and exporter as usual and calls ``taskloom.tracing.enable()``: one span
per run of an execution, one per step under it. Here the spans are kept in memory and printed as a tree.

Run: ``python examples/logging_and_tracing.py``
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from taskloom import WorkflowExecutionContext, task, tracing, workflow
from taskloom.tasks import parallel

logging.basicConfig(
    stream=sys.stdout,
    level=logging.INFO,
    format="%(levelname)s [%(execution_id)s %(step_id)s %(task)s] %(name)s: %(message)s",
)
log = logging.getLogger("shop")  # the program's own logger: its records say where they came from too


@task
def reserve(item: str) -> str:
    log.info("reserving %s", item)
    return f"{item}:reserved"


@task
async def reserve_all(items: list[str]) -> list[str]:
    return list(await parallel(*(reserve(item) for item in items)))  # steps under this one's id


@workflow
async def checkout(ctx: WorkflowExecutionContext[list[str]]) -> list[str]:
    ctx.logger.info("checking out %d items", len(ctx.input))
    reserved = await reserve_all(ctx.input)
    ctx.logger.info("done")
    return reserved


def trace_to_memory() -> Any:
    """The SDK's in-memory exporter as the program's exporter (use OTLP or the console in real life)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    return exporter


def print_tree(spans: Any) -> None:
    children: dict[int | None, list[Any]] = {}
    for span in spans:
        children.setdefault(span.parent.span_id if span.parent else None, []).append(span)

    def show(parent: int | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_time):
            step = span.attributes.get("taskloom.step_id")
            where = f" (step {step})" if step else ""
            print(f"{'  ' * depth}{span.name}{where}: {span.attributes['taskloom.status']}")
            show(span.context.span_id, depth + 1)

    show(None, 0)


if __name__ == "__main__":
    log.info("starting")  # outside any execution: the fields are None
    try:
        exporter = trace_to_memory()
    except ImportError:
        exporter = None
        print("(no OpenTelemetry SDK installed: logs only)")
    ctx = checkout.run(["mug", "pen"])
    print("result:", ctx.output)
    if exporter is not None:
        print_tree(exporter.get_finished_spans())
