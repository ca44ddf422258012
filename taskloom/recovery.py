"""``taskloom recover``: one pass over the store that finishes what was interrupted, for deployments
without workers.

An execution is interrupted when its run stopped without finishing it: the process was killed or lost
power (its lease ran out), it was interrupted with Ctrl-C (put back as ``queued``), a store outage broke
the run off (its lease was released or runs out), or a paused execution's deadline passed. Workers take
these over by themselves; ``recover`` does the same once, in this process, and returns what happened.
Like a worker's sweep, it first fails the executions that passed their workflow's deadline
(``@workflow(timeout=...)``) while nobody ran them, a paused one included (:func:`taskloom.deadlines.sweep`).

Executions another live process runs are left to it (their lease has not expired). Each execution is
driven by the normal replaying driver under a lease of its own, so ``recover`` running next to workers,
or twice at once, never runs a completed step again.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskloom import deadlines
from taskloom.discovery import find_workflows, import_modules
from taskloom.errors import ExecutionStateError, TaskloomError
from taskloom.executions import pause_deadline
from taskloom.store.base import ExecutionRecord, ExecutionStatus, Store, not_yet_due
from taskloom.workflow import Workflow

log = logging.getLogger("taskloom.recovery")

#: how many executions one pass looks at, per status
SCAN_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What one pass did: executions driven to an end (id, status) and those it could not run (id, reason)."""

    finished: list[tuple[str, str]] = field(default_factory=list)
    failed_to_run: list[tuple[str, str]] = field(default_factory=list)


def interrupted(store: Store, now: float | None = None) -> list[ExecutionRecord]:
    """Executions no live process runs that are waiting to be continued, oldest first (a delayed start
    only once its time has come)."""
    now = time.time() if now is None else now
    found: list[ExecutionRecord] = []
    for status in (ExecutionStatus.RUNNING, ExecutionStatus.QUEUED, ExecutionStatus.PAUSED):
        for record in store.list_executions(status=status, limit=SCAN_LIMIT):
            live = record.lease_expires_at is not None and record.lease_expires_at >= now
            if status == ExecutionStatus.RUNNING and live:
                continue  # a live owner runs it
            if not_yet_due(record, now):
                continue  # started with a delay that has not passed
            if status == ExecutionStatus.PAUSED:
                deadline = pause_deadline(store.load_events(record.id))
                if deadline is None or deadline > now:
                    continue  # waits for a resume
            found.append(record)
    found.sort(key=lambda record: record.created_at)
    return found


def recover(store: Store, module_names: Sequence[str] = ()) -> RecoveryReport:
    """Continue every interrupted execution once; the workflows come from ``module_names``, or else from
    each execution's recorded target (``module:qualname``)."""
    workflows = find_workflows(import_modules(module_names)) if module_names else {}
    report = RecoveryReport()
    _expire(store, workflows if module_names else _paused_workflows(store), report)
    for record in interrupted(store):
        workflow = workflows.get(record.workflow) if module_names else _import_target(record)
        if workflow is None:
            reason = (
                f"workflow {record.workflow!r} is not in {', '.join(module_names)}"
                if module_names
                else f"its workflow cannot be imported from {record.target!r}"
            )
            report.failed_to_run.append((record.id, reason))
            continue
        try:
            ctx = asyncio.run(workflow.arun(execution_id=record.id, store=store, wait=False, continue_paused=False))
        except ExecutionStateError as error:
            report.failed_to_run.append((record.id, str(error)))  # another process took it meanwhile
            continue
        except TaskloomError as error:
            log.warning("recover: execution %s: %s", record.id, error)
            report.failed_to_run.append((record.id, str(error)))
            continue
        report.finished.append((record.id, ctx.status))
    return report


def _expire(store: Store, workflows: Mapping[str, Workflow[Any]], report: RecoveryReport) -> None:
    """Fail what passed its workflow's deadline while nobody ran it, as a worker's sweep does: queued and
    dead-running ones would fail at once when driven below anyway, but a paused one waits for a resume
    that its deadline forbids, and only this finds it."""
    timeouts = {name: wf.timeout for name, wf in workflows.items() if wf.timeout is not None}
    if not timeouts:
        return
    for execution_id in deadlines.sweep(store, timeouts, time.time()).failed:
        report.finished.append((execution_id, ExecutionStatus.FAILED))


def _paused_workflows(store: Store) -> dict[str, Workflow[Any]]:
    """The workflows of paused executions, from their recorded targets (``recover`` without modules)."""
    found: dict[str, Workflow[Any]] = {}
    for record in store.list_executions(status=ExecutionStatus.PAUSED, limit=SCAN_LIMIT):
        if record.workflow not in found:
            workflow = _import_target(record)
            if workflow is not None:
                found[record.workflow] = workflow
    return found


def _import_target(record: ExecutionRecord) -> Workflow[Any] | None:
    if not record.target or ":" not in record.target:
        return None
    module_name, _, qualname = record.target.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as error:
        log.warning("recover: execution %s: cannot import %s: %s", record.id, record.target, error)
        return None
    return value if isinstance(value, Workflow) else None
