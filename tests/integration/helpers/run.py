"""Drive a workflow in this process and print one JSON line about the outcome.

    python -m helpers.run MODULE:WORKFLOW new [INPUT_JSON]
    python -m helpers.run MODULE:WORKFLOW run EXECUTION_ID
    python -m helpers.run MODULE:WORKFLOW resume EXECUTION_ID [INPUT_JSON]

The store comes from ``TASKLOOM_DATABASE_URL`` as in any user program. The JSON line has the execution
id, the status, the output as :func:`taskloom.serde.json_view` renders it, and the output's type names.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from taskloom.serde import json_view


def type_names(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): type_names(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [type_names(v) for v in value]
    return type(value).__qualname__


def main(argv: list[str]) -> None:
    target, action, *rest = argv
    module_name, _, name = target.partition(":")
    flow = getattr(importlib.import_module(module_name), name)
    if action == "new":
        ctx = flow.run(json.loads(rest[0]) if rest else None)
    elif action == "run":
        ctx = flow.run(execution_id=rest[0])
    elif action == "resume":
        ctx = flow.resume(rest[0], json.loads(rest[1]) if len(rest) > 1 else None)
    else:
        raise SystemExit(f"unknown action {action!r}")
    report = {
        "execution_id": ctx.execution_id,
        "status": ctx.status,
        "output": json_view(ctx.output),
        "types": type_names(ctx.output),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
