"""taskloom: tasks and durable workflows in one light library.

The public API is re-exported here; everything else is private to its module.
"""

from taskloom.context import ExecutionContext, WorkflowExecutionContext
from taskloom.errors import (
    ExecutionNotFoundError,
    GraphError,
    MaxInstancesReachedError,
    NonDeterminismError,
    SecretNotFoundError,
    SerializationError,
    SessionNotFoundError,
    TaskCancelledError,
    TaskDefinitionError,
    TaskError,
    TaskloomError,
    TaskTimeoutError,
    WorkflowError,
)
from taskloom.options import TaskOptions
from taskloom.runtime.control import TaskControl
from taskloom.task import Task, task
from taskloom.workflow import Workflow, workflow

__all__ = [
    "ExecutionContext",
    "ExecutionNotFoundError",
    "GraphError",
    "MaxInstancesReachedError",
    "NonDeterminismError",
    "SecretNotFoundError",
    "SerializationError",
    "SessionNotFoundError",
    "Task",
    "TaskCancelledError",
    "TaskControl",
    "TaskDefinitionError",
    "TaskError",
    "TaskOptions",
    "TaskTimeoutError",
    "TaskloomError",
    "Workflow",
    "WorkflowError",
    "WorkflowExecutionContext",
    "task",
    "workflow",
]
