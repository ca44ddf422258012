"""``taskloom worker MODULE...``: one process that runs a module's workflows and its task instances.

This module owns what belongs to a process rather than to a worker: the signals (SIGTERM and SIGINT
finish what is held, within the grace period) and the exit. :class:`~taskloom.worker.Worker` and
:class:`~taskloom.instance_worker.InstanceWorker` know nothing of either, and nothing of each other.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

from taskloom.discovery import find_workflows, import_modules
from taskloom.errors import WorkflowError
from taskloom.exposure import database_url_warning, server_url_warning
from taskloom.instance_worker import InstanceWorker, find_tasks
from taskloom.leases import new_owner
from taskloom.presence import Presence, workflow_target
from taskloom.retention import Pruner, output_dirs_of, parse_age
from taskloom.schedules import start_ticker
from taskloom.settings import Settings, WorkerSettings
from taskloom.store import describe_store
from taskloom.worker import Worker

log = logging.getLogger("taskloom.worker")


def run_worker(module_names: Sequence[str], settings: WorkerSettings, *, queues: Sequence[str] = ()) -> None:
    """Entry point of ``taskloom worker MODULE...``: runs the modules' workflows and task instances.

    Queued executions go to a :class:`Worker`, remote task instances (``TASKLOOM_BACKEND=remote``) to an
    :class:`~taskloom.instance_worker.InstanceWorker`; one process serves both, with the same settings.
    A :class:`~taskloom.schedules.Ticker` starts the ticks of its workflows' schedules (every worker runs
    one: each tick still starts once). The workflow worker claims from ``queues`` (``--queue``), else
    from the default queue and every :class:`~taskloom.queues.Queue` the modules declare.
    """
    env = Settings.from_env()
    log.info("worker: %s", describe_store(env.database_url))
    for warning in (database_url_warning(env.database_url), env.server_url and server_url_warning(env.server_url)):
        if warning:
            log.warning("worker: %s", warning)
    modules = import_modules(module_names)
    workflows, tasks = find_workflows(modules), find_tasks(modules)
    if not workflows and not tasks:
        raise WorkflowError(f"no @workflow or @task at the top level of {', '.join(module_names)}; nothing to run")
    worker_id = new_owner()  # one id per process: `taskloom workers` shows one worker serving both
    executions = Worker(workflows, settings, worker_id=worker_id, queues=queues) if workflows else None
    instances = InstanceWorker(tasks, settings, worker_id=worker_id) if tasks else None
    stopping = threading.Event()
    # Registers the @workflow(schedule=...) schedules first: a conflicting one fails the start, named.
    ticker = start_ticker(executions.store, workflows) if executions is not None else None
    # TASKLOOM_RETENTION: prune finished executions older than it, about once an hour (taskloom.retention).
    pruner = None
    if env.retention and executions is not None:
        retention = parse_age(env.retention, what="TASKLOOM_RETENTION")
        folders = output_dirs_of(task for copies in tasks.values() for task in copies)
        pruner = Pruner(executions.store, retention, folders).start()
        log.info("worker: pruning finished executions older than %s", env.retention)

    def on_signal(signum: int, frame: Any) -> None:
        log.info("worker: signal %s, finishing what it holds", signum)
        stopping.set()
        if ticker is not None:
            ticker.stop(wait=False)  # no new ticks from a worker on its way out
        for part in (executions, instances):
            if part is not None:
                part.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    presence = None
    if executions is not None:  # the instance worker registers its tasks itself
        targets = [workflow_target(name) for name in sorted(workflows)]
        presence = Presence(executions.store, executions.worker_id, targets).start()
    if instances is not None:
        instances.start()
    if executions is not None:
        abandoned = executions.run()
    else:
        abandoned = False
        while not stopping.wait(0.5):
            pass
    if instances is not None:
        while not instances.join(0.5):
            pass
        abandoned = abandoned or instances.abandoned
    if ticker is not None:
        ticker.stop()
    if pruner is not None:
        pruner.stop()
    if presence is not None:
        presence.stop()
    if abandoned:
        os._exit(0)  # threads still inside abandoned work; it was put back in the queue
