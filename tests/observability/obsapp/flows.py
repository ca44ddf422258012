"""Run by ``taskloom worker obsapp.flows``: a workflow whose records go to stderr with their origin.

The format names the attributes every record carries; the worker's log (its stderr) is what the test reads.
"""

from __future__ import annotations

import logging
import sys

from taskloom import WorkflowExecutionContext, task, workflow

ORIGIN_FORMAT = "ORIGIN execution=%(execution_id)s workflow=%(workflow)s step=%(step_id)s task=%(task)s %(message)s"

_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter(ORIGIN_FORMAT))
for name in ("obsapp", "taskloom.user"):
    _logger = logging.getLogger(name)
    _logger.addHandler(_handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False

log = logging.getLogger(__name__)


@task
def shout(word: str) -> str:
    log.info("shouting %s", word)
    return word.upper()


@workflow
async def shouted(ctx: WorkflowExecutionContext[str]) -> str:
    ctx.logger.info("begin")
    loud = await shout(ctx.input)
    ctx.logger.info("end")
    return loud
