"""taskloom: tasks and durable workflows in one light library.

The public API is re-exported here; everything else is private to its module.
"""

from taskloom.context import ExecutionContext, WorkflowExecutionContext
from taskloom.errors import (
    ExecutionCrashedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    GraphError,
    MaxInstancesReachedError,
    NonDeterminismError,
    SecretNotFoundError,
    SerializationError,
    SessionNotFoundError,
    StoreError,
    StoreUnavailableError,
    TaskCancelledError,
    TaskDefinitionError,
    TaskError,
    TaskloomError,
    TaskTimeoutError,
    UndecodableValueError,
    WorkflowError,
)
from taskloom.options import TaskOptions
from taskloom.runtime.control import TaskControl
from taskloom.runtime.future import Future
from taskloom.runtime.instance import TaskInstance
from taskloom.runtime.session import Session
from taskloom.task import Task, task
from taskloom.workflow import Workflow, workflow

__all__ = [
    "ExecutionContext",
    "ExecutionCrashedError",
    "ExecutionNotFoundError",
    "ExecutionStateError",
    "Future",
    "GraphError",
    "MaxInstancesReachedError",
    "NonDeterminismError",
    "SecretNotFoundError",
    "SerializationError",
    "Session",
    "SessionNotFoundError",
    "StoreError",
    "StoreUnavailableError",
    "Task",
    "TaskCancelledError",
    "TaskControl",
    "TaskDefinitionError",
    "TaskError",
    "TaskInstance",
    "TaskOptions",
    "TaskTimeoutError",
    "TaskloomError",
    "UndecodableValueError",
    "Workflow",
    "WorkflowError",
    "WorkflowExecutionContext",
    "task",
    "workflow",
]
