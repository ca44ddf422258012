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

``import taskloom`` does not import :mod:`logging` itself (with ``traceback``, ``linecache``, ``tokenize``
and ``string`` it is several ms of every process's start, issue 12): where the program has not imported it
yet, the factory is installed the moment it does (:class:`_AfterLoggingLoads`, a post-import hook), before
any record can be made. taskloom's own loggers (:func:`lazy_logger`) and :data:`logger` are got on first use.
"""

from __future__ import annotations

import contextvars
import functools
import sys
from collections.abc import Callable, Mapping

from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    import logging
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any, TypeAlias, cast

    #: ``taskloom.user``, made on first use (module ``__getattr__``): see :func:`user_logger`
    logger: logging.Logger
else:
    from taskloom.typing_free import cast

#: the attributes every record gets, in this order
FIELDS = ("execution_id", "workflow", "step_id", "task", "instance_id")

Origin: TypeAlias = Mapping[str, str | None]
"""Where code runs: a value for each of :data:`FIELDS` (a dict, made once per execution, step or instance
and never changed, so the factory copies it onto a record with one ``dict.update``)."""

#: outside any execution, step or instance: every field is None
NOWHERE: Origin = dict.fromkeys(FIELDS)

current_origin: contextvars.ContextVar[Origin] = contextvars.ContextVar("taskloom_origin", default=NOWHERE)


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
    """Put the origin on every record from now on (done when taskloom and logging are both imported;
    idempotent)."""
    import logging

    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _OriginRecordFactory):
        logging.setLogRecordFactory(_OriginRecordFactory(factory))


def _fill_origin(record: logging.LogRecord) -> bool:
    """Logger filter of taskloom's user loggers: the origin, on a record whose factory did not set it."""
    if "execution_id" not in record.__dict__:
        record.__dict__.update(current_origin.get())
    return True


def user_logger() -> logging.Logger:
    """``taskloom.logger``: ``taskloom.user``, the parent of ``ctx.logger``; log to it from code that has
    no context at hand."""
    import logging

    parent = logging.getLogger("taskloom.user")
    if _fill_origin not in parent.filters:
        parent.addFilter(_fill_origin)
    return parent


@functools.cache
def workflow_logger(workflow: str) -> logging.Logger:
    """``ctx.logger``: ``taskloom.user.<workflow>``, a child of :data:`logger` (configure either)."""
    child = user_logger().getChild(workflow)
    child.addFilter(_fill_origin)
    return child


class _LazyLogger:
    """A :class:`logging.Logger` by name, got from :mod:`logging` on first use (see :func:`lazy_logger`)."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: logging.Logger | None = None

    def __getattr__(self, attribute: str) -> Any:
        found = self._logger
        if found is None:
            import logging

            found = self._logger = logging.getLogger(self._name)
        return getattr(found, attribute)

    def __repr__(self) -> str:
        return f"<logger {self._name} (lazy)>"


def lazy_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` for a module's ``log``, without importing logging until it logs: most
    runs never do, and logging is a fair share of a short process's start (issue 12)."""
    return cast("logging.Logger", _LazyLogger(name))


class _AfterLoggingLoads:
    """A post-import hook: a meta path finder that answers only for ``logging``, and has the module found
    by the finders after it loaded as it would be, then installs the record factory, before the import
    returns (so before any record can be made). It removes itself on first use."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec: ModuleSpec | None = None if find_spec is None else find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        assert spec is not None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # a loader without exec_module (none of CPython's): left as it is
        spec.loader = _InstallAfterLoading(spec.loader)  # type: ignore[assignment]
        return spec


class _InstallAfterLoading:
    """The loader of ``logging``, wrapped: loads it, puts the real loader back on the module, installs."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self.loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        install_record_factory()

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.loader, attribute)


def install_when_logging_loads() -> None:
    """Install the record factory now if logging is loaded, else right after it is (idempotent)."""
    if "logging" in sys.modules:
        install_record_factory()
    elif not any(isinstance(finder, _AfterLoggingLoads) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterLoggingLoads())


def __getattr__(name: str) -> Any:
    if name == "logger":  # made on first use, with logging
        return user_logger()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


install_when_logging_loads()
