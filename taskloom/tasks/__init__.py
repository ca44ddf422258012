"""What users import from ``taskloom.tasks``: built-in steps and composition."""

from taskloom.tasks.builtins import choice, now, pause, randint, randrange, receive, sleep, uuid4
from taskloom.tasks.compose import parallel, pipeline
from taskloom.tasks.graph import Graph
from taskloom.versioning import deprecate_patch, patched

__all__ = [
    "Graph",
    "choice",
    "deprecate_patch",
    "now",
    "parallel",
    "patched",
    "pause",
    "pipeline",
    "randint",
    "randrange",
    "receive",
    "sleep",
    "uuid4",
]
