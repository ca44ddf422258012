"""Finding user code for the CLI: ``module:attribute`` targets, imported from the working directory."""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

from taskloom.workflow import Workflow


class CommandError(Exception):
    """A usage problem the CLI reports as one clear line (exit code 2)."""


def import_target(target: str) -> Any:
    """Import ``module:attr`` (or ``path/to/file.py:attr``) with the working directory on sys.path."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise CommandError(f"target {target!r} must look like MODULE:WORKFLOW, for example examples.hello:hello")
    if module_name.endswith(".py"):
        folder, file = os.path.split(module_name)
        sys.path.insert(0, os.path.abspath(folder or "."))
        module_name = file[:-3]
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CommandError(f"cannot import module {module_name!r} for {target!r}: {error}") from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CommandError(f"module {module_name!r} has no attribute {attr!r}") from None
    return value


def load_workflow(target: str) -> Workflow[Any]:
    value = import_target(target)
    if not isinstance(value, Workflow):
        raise CommandError(f"{target!r} is {type(value).__name__}, not a @workflow")
    return value


def parse_input(text: str | None, what: str = "INPUT") -> Any:
    """JSON input. Bad JSON is an error, not silently a string: quote strings as '"text"'."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CommandError(
            f"{what} must be JSON ({error.msg} at position {error.pos}); a string is written '\"text\"'"
        ) from None
