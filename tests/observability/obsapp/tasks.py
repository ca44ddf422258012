"""Tasks for the ``local-process`` backend: each logs, inside its worker process, to a file it is given."""

from __future__ import annotations

import logging
import os

from taskloom import TaskControl, task

ORIGIN_FORMAT = "execution=%(execution_id)s task=%(task)s instance=%(instance_id)s pid=%(process)d %(message)s"


@task
def log_to(path: str) -> int:
    """Logs with the user's own logger, through a handler of its own, in whatever process runs it."""
    logger = logging.getLogger("obsapp.tasks")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(ORIGIN_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("from the worker")
    finally:
        logger.removeHandler(handler)
        handler.close()
    return os.getpid()


@task
def report(tc: TaskControl) -> int:
    """A TaskControl log: made in the worker, replayed on the instance's control in the parent."""
    tc.log("reported from the worker")
    return os.getpid()
