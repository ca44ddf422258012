"""What a task or workflow needs to know of its function's parameters, read without ``inspect`` when it can.

``@task`` asks at decoration time whether the function is ``async``, where its TaskControl parameter is,
whether a call of ``n`` positional arguments always binds, and whether it takes ``**kwargs``. ``inspect``
answers all that, but importing it (with ``ast``, ``dis``, ``tokenize``) costs every process about 4 ms
on a small machine, a tenth of issue 12's one-step process. A plain Python function carries the answers in
its code object, its ``__defaults__`` and its ``__annotations__``; anything else (a callable object, a
``functools.partial``, a function wrapped by ``functools.wraps`` or given a ``__signature__``) is read by
``inspect.signature`` as before, so both give the same facts.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable

from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

#: code flags (``inspect.CO_*``): the function is ``async def``; takes ``*args``; takes ``**kwargs``
CO_COROUTINE = 0x0080
CO_VARARGS = 0x0004
CO_VARKEYWORDS = 0x0008
#: the annotation of a parameter that has none (``inspect.Parameter.empty`` on the inspect path)
NO_ANNOTATION: Any = object()


class ParameterFacts:
    """The facts about a function's parameters a task needs."""

    __slots__ = ("accepts_kwargs", "exact_arity", "leading", "names")

    def __init__(
        self,
        names: tuple[str, ...],
        leading: tuple[tuple[str, Any], ...],
        exact_arity: int | None,
        accepts_kwargs: bool,
    ) -> None:
        #: every parameter's name, ``*args`` and ``**kwargs`` included
        self.names = names
        #: the first two parameters (fewer if it has fewer): name and annotation (NO_ANNOTATION if none)
        self.leading = leading
        #: how many positional arguments always bind (no defaults, no ``*args``/``**kwargs``, none
        #: keyword-only), else None
        self.exact_arity = exact_arity
        #: whether it takes ``**kwargs``
        self.accepts_kwargs = accepts_kwargs


def _plain_function(fn: Any) -> bool:
    """A function whose code object says what ``inspect.signature`` would: not wrapped, no __signature__."""
    return type(fn) is types.FunctionType and not hasattr(fn, "__wrapped__") and not hasattr(fn, "__signature__")


def is_coroutine_function(fn: Any) -> bool:
    """``inspect.iscoroutinefunction(fn)``."""
    if type(fn) is types.FunctionType:
        return bool(fn.__code__.co_flags & CO_COROUTINE)
    import inspect

    return inspect.iscoroutinefunction(fn)


#: code flag of a generator that ``types.coroutine`` made awaitable
CO_ITERABLE_COROUTINE = 0x0100


def is_awaitable(value: Any) -> bool:
    """``inspect.isawaitable(value)``: a coroutine, a generator-based coroutine, or anything with ``__await__``."""
    if isinstance(value, types.GeneratorType):
        return bool(value.gi_code.co_flags & CO_ITERABLE_COROUTINE)
    return isinstance(value, Awaitable)


def parameter_facts(fn: Callable[..., Any]) -> ParameterFacts:
    """The :class:`ParameterFacts` of ``fn``; a callable ``inspect.signature`` cannot read raises as it does."""
    if not _plain_function(fn):
        return _facts_from_inspect(fn)
    code = fn.__code__  # type: ignore[attr-defined]
    positional, keyword_only, flags = code.co_argcount, code.co_kwonlyargcount, code.co_flags
    variables = code.co_varnames
    # in inspect's order: the positional ones, *args, the keyword-only ones, **kwargs (in the code object
    # the keyword-only ones come before *args and **kwargs)
    names = list(variables[:positional])
    after = positional + keyword_only
    if flags & CO_VARARGS:
        names.append(variables[after])
        after += 1
    names.extend(variables[positional : positional + keyword_only])
    if flags & CO_VARKEYWORDS:
        names.append(variables[after])
    annotations = fn.__annotations__  # type: ignore[attr-defined]
    leading = tuple((name, annotations.get(name, NO_ANNOTATION)) for name in names[:2])
    varying = keyword_only or flags & (CO_VARARGS | CO_VARKEYWORDS) or fn.__defaults__  # type: ignore[attr-defined]
    exact = None if varying else positional
    return ParameterFacts(tuple(names), leading, exact, bool(flags & CO_VARKEYWORDS))


def _facts_from_inspect(fn: Callable[..., Any]) -> ParameterFacts:
    import inspect

    parameters = list(inspect.signature(fn).parameters.values())
    empty = inspect.Parameter.empty
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    leading = tuple((p.name, NO_ANNOTATION if p.annotation is empty else p.annotation) for p in parameters[:2])
    exact = len(parameters) if all(p.kind in positional and p.default is empty for p in parameters) else None
    accepts_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return ParameterFacts(tuple(p.name for p in parameters), leading, exact, accepts_kwargs)
