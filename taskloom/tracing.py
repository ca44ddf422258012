"""Where an execution and its steps run, for logs always and for OpenTelemetry when enabled.

The workflow driver opens an :func:`execution` watch around a run of an execution, the step driver a
:class:`step` watch around each task step it runs. A watch sets :data:`taskloom.logs.current_origin`
(what every log record made meanwhile carries) and, once :func:`enable` was called, an OpenTelemetry span:
one per run of an execution, with one child span per step under it. Spans are made current while they
run, so a step's span is the parent of the steps of an async task's body (``"3.1"`` under ``"3"``), of
``parallel``/``map`` branches started there, of a child workflow driven in this process, and of the spans
that the step's own code (or the libraries it calls, instrumented) starts, in a step's thread too.

Replayed steps get no span: a step answered from the event log does no work, and a resumed execution
that replays a hundred steps to reach its pause would otherwise report a hundred zero-length spans each
time it continues. Each run of an execution (first run, resume, takeover after a crash) is its own span,
so the steps of one run are the spans that ran in it.

OpenTelemetry is an optional extra (``pip install taskloom[otel]``): this module imports it only in
:func:`enable`, so ``import taskloom`` never loads it, and with tracing off a step costs a contextvar
set and reset (see ``benchmarks/bench_observability.py``). Spans go to the tracer provider the program
configured (``opentelemetry.trace.set_tracer_provider``), or to the one passed to :func:`enable`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import TracebackType

from taskloom.errors import TaskloomError, WorkflowSignal
from taskloom.logs import Origin, current_origin, origin
from taskloom.loop_free import is_cancelled
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

#: the instrumentation scope named on every span
SCOPE = "taskloom"


class _Tracing:
    """The one global: the tracer spans come from (None: tracing is off) and the OpenTelemetry modules."""

    tracer: Any = None
    trace: Any = None
    context: Any = None


_tracing = _Tracing()


def enable(tracer_provider: Any = None) -> None:
    """Report an OpenTelemetry span per execution run and per step from now on, in this process.

    ``tracer_provider``: where the spans go; by default the global provider, looked up when each span
    starts, so it may be set after this call. A worker reports spans when the module it imports (the
    one defining the workflows) calls this.
    """
    try:
        from opentelemetry import context, trace
    except ImportError as missing:
        raise TaskloomError(
            "taskloom.tracing.enable() needs OpenTelemetry: install the otel extra (pip install 'taskloom[otel]')"
        ) from missing
    from importlib.metadata import PackageNotFoundError, version

    try:
        own_version: str | None = version("taskloom")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        own_version = None
    _tracing.trace, _tracing.context = trace, context
    _tracing.tracer = trace.get_tracer(SCOPE, own_version, tracer_provider)


def disable() -> None:
    """Stop reporting spans (runs and steps already started still end theirs)."""
    _tracing.tracer = None


def is_enabled() -> bool:
    return _tracing.tracer is not None


class _Watch:
    """A span made current (when tracing is on) and the origin of log records, for one run or step."""

    __slots__ = ("otel_token", "span", "token")

    def __init__(self, where: Origin) -> None:
        self.token = current_origin.set(where)
        self.span: Any = None
        self.otel_token: Any = None

    def _start_span(self, tracer: Any, name: str, attributes: Mapping[str, str | int]) -> None:
        self.span = tracer.start_span(name, attributes=attributes)
        self.otel_token = _tracing.context.attach(_tracing.trace.set_span_in_context(self.span))

    def _close(self, status: str, error: BaseException | None) -> None:
        current_origin.reset(self.token)
        span = self.span
        if span is None:
            return
        span.set_attribute("taskloom.status", status)
        if error is not None:
            span.record_exception(error)
            status_code = _tracing.trace.StatusCode.ERROR
            span.set_status(_tracing.trace.Status(status_code, f"{type(error).__name__}: {error}"))
        _tracing.context.detach(self.otel_token)
        span.end()


class ExecutionWatch(_Watch):
    """Opened by the workflow driver for one run of an execution; :meth:`end` closes it."""

    __slots__ = ("handled_before",)

    def __init__(self, where: Origin) -> None:
        super().__init__(where)
        #: an exception the caller was already handling when the run started (wf.run in an except block)
        self.handled_before = sys.exc_info()[1]

    def end(self, status: str, output: Any) -> None:
        """The run is over with the execution in ``status``; ``output`` is its error when it failed.

        Called in the driver's ``finally``: an exception leaving the driver (a replay mismatch, a store
        failure, Ctrl-C) is the run's error, whatever the status says.
        """
        error = sys.exc_info()[1]
        if error is self.handled_before:
            error = None
        if error is None and status == "failed" and isinstance(output, BaseException):
            error = output
        self._close(status, error)


def execution(execution_id: str, workflow: str) -> ExecutionWatch:
    """Open the watch of a run of ``execution_id`` (call :meth:`ExecutionWatch.end` when it is over)."""
    watch = ExecutionWatch(origin(execution_id=execution_id, workflow=workflow))
    tracer = _tracing.tracer
    if tracer is not None:
        attributes = {"taskloom.execution_id": execution_id, "taskloom.workflow": workflow}
        watch._start_span(tracer, f"workflow {workflow}", attributes)
    return watch


def step_origin(execution_id: str, step_id: str, task: str) -> Origin:
    """The origin of the logs of a step of the run whose origin is current: what :class:`step` sets (and
    the plain steps' path of replay sets itself, with no watch, while tracing is off)."""
    workflow = current_origin.get()["workflow"]
    return {"execution_id": execution_id, "workflow": workflow, "step_id": step_id, "task": task, "instance_id": None}


class step(_Watch):  # lower case: used as a context manager, like contextlib's
    """``with step(execution_id, step_id, task_name):`` around a step that runs (not a replayed one).

    Written for the path of every step with tracing off: one contextvar read, a dict, a set and a reset.
    """

    __slots__ = ()

    def __init__(self, execution_id: str, step_id: str, task: str) -> None:
        where = step_origin(execution_id, step_id, task)
        self.token = current_origin.set(where)
        workflow = where["workflow"]
        self.span = None
        tracer = _tracing.tracer
        if tracer is not None:
            attributes: dict[str, str | int] = {
                "taskloom.execution_id": execution_id,
                "taskloom.workflow": workflow or "",
                "taskloom.step_id": step_id,
                "taskloom.task": task,
                "taskloom.attempt": 1,
            }
            self._start_span(tracer, f"step {task}", attributes)

    def __enter__(self) -> step:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.span is None:
            current_origin.reset(self.token)
        elif error is None:
            self._close("completed", None)
        elif isinstance(error, Exception):
            self._close("failed", error)
        elif is_cancelled(error):
            self._close("cancelled", None)
        elif isinstance(error, WorkflowSignal):  # a child step waiting durably: the execution pauses
            self._close("paused", None)
        else:
            self._close("interrupted", error)


def step_retried(attempt: int, error: BaseException, delay: float) -> None:
    """Attempt ``attempt`` of the step running here failed and is retried after ``delay`` seconds: an event
    on the step's span, whose ``taskloom.attempt`` becomes the next attempt's number."""
    if _tracing.tracer is None:
        return
    span = _tracing.trace.get_current_span()
    span.set_attribute("taskloom.attempt", attempt + 1)
    span.add_event(
        "taskloom.retry",
        {"taskloom.attempt": attempt, "taskloom.delay": delay, "exception.type": type(error).__name__},
    )
