"""What users import from ``taskloom.tasks``: built-in steps and composition."""

from taskloom.tasks.builtins import choice, now, pause, randint, randrange, receive, sleep, uuid4
from taskloom.tasks.compose import parallel, pipeline
from taskloom.tasks.graph import Graph

__all__ = [
    "Graph",
    "choice",
    "now",
    "parallel",
    "pause",
    "pipeline",
    "randint",
    "randrange",
    "receive",
    "sleep",
    "uuid4",
]
