"""Which execution, step and task a log record came from: ``execution_id``, ``workflow``, ``step_id``,
``task`` and ``instance_id`` on every :class:`logging.LogRecord`.

The driver says where the code runs now by setting :data:`current_origin` (a contextvar, so each
``parallel``/``map`` branch, each thread a sync step runs in and each instance has its own): the workflow
driver for an execution, the step driver for each step (:mod:`taskloom.tracing` does both), an instance's
backend for an instance, in a worker process too.

Why a :class:`logging.LogRecord` factory, installed when taskloom is imported, rather than a
``logging.Filter`` on taskloom's loggers or a ``LoggerAdapter``:

- It tags every record made while a step runs, also those of the user's own
  ``logging.getLogger(__name__)`` and of the libraries a step calls, not only ``ctx.logger``'s; a filter
  sees only the records of the logger it is attached to (a logger's filters are not applied to records
  propagated from its children), an adapter only its own calls.
- Every record has the attributes, ``None`` outside any execution, so ``%(execution_id)s`` in the root
  handler's format never raises on a record of another library; with a filter such a format fails for
  every record the filter did not see.
- It works with every handler and formatter (JSON formatters that dump ``record.__dict__``, structlog's
  ``ProcessorFormatter`` with ``ExtraAdder``), as the values are plain attributes of the record.

Its cost is one contextvar read and a dict update per record *made* (records below a logger's level are
never made), measured in ``benchmarks/bench_observability.py``; nothing at all for a step that does not
log. The one thing it takes away: ``extra=`` may not use these five names, as logging refuses to
overwrite a record's attribute (``KeyError``, as for ``extra={"name": ...}``). The previous factory is
kept and called first, so a factory installed before taskloom keeps working; one installed after taskloom
that does not call the previous one drops the attributes, so :data:`logger` and ``ctx.logger`` also carry
a filter that puts them back.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

#: the attributes every record gets, in this order
FIELDS = ("execution_id", "workflow", "step_id", "task", "instance_id")

Origin: TypeAlias = Mapping[str, str | None]
"""Where code runs: a value for each of :data:`FIELDS` (a dict, made once per execution, step or instance
and never changed, so the factory copies it onto a record with one ``dict.update``)."""

#: outside any execution, step or instance: every field is None
NOWHERE: Origin = dict.fromkeys(FIELDS)

current_origin: contextvars.ContextVar[Origin] = contextvars.ContextVar("taskloom_origin", default=NOWHERE)

#: the parent of ``ctx.logger``; log to it (``taskloom.logger``) from code that has no context at hand
logger = logging.getLogger("taskloom.user")


def origin(
    *,
    execution_id: str | None = None,
    workflow: str | None = None,
    step_id: str | None = None,
    task: str | None = None,
    instance_id: str | None = None,
) -> Origin:
    return {
        "execution_id": execution_id,
        "workflow": workflow,
        "step_id": step_id,
        "task": task,
        "instance_id": instance_id,
    }


class _OriginRecordFactory:
    """Makes a record with the previous factory, then copies the current origin onto it."""

    __slots__ = ("previous",)

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        record.__dict__.update(current_origin.get())
        return record


def install_record_factory() -> None:
    """Put the origin on every record from now on (done when taskloom is imported; idempotent)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _OriginRecordFactory):
        logging.setLogRecordFactory(_OriginRecordFactory(factory))


def _fill_origin(record: logging.LogRecord) -> bool:
    """Logger filter of taskloom's user loggers: the origin, on a record whose factory did not set it."""
    if "execution_id" not in record.__dict__:
        record.__dict__.update(current_origin.get())
    return True


@functools.cache
def workflow_logger(workflow: str) -> logging.Logger:
    """``ctx.logger``: ``taskloom.user.<workflow>``, a child of :data:`logger` (configure either)."""
    child = logger.getChild(workflow)
    child.addFilter(_fill_origin)
    return child


logger.addFilter(_fill_origin)
install_record_factory()
