"""Drive a workflow with the Python API in this process; print one JSON line about the outcome.

    python -m faultapp.drive MODULE:WORKFLOW new [INPUT_JSON]
    python -m faultapp.drive MODULE:WORKFLOW run EXECUTION_ID
    python -m faultapp.drive MODULE:WORKFLOW resume EXECUTION_ID [INPUT_JSON]

Unlike ``taskloom run``, an exception out of ``wf.run()`` is reported with its type, the names of its
classes and its message (exit status 1), so a test can check exactly what the caller of ``wf.run()`` sees.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from taskloom.serde import json_view


def drive(argv: list[str]) -> dict[str, Any]:
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
    return {"execution_id": ctx.execution_id, "status": ctx.status, "output": json_view(ctx.output)}


def main(argv: list[str]) -> int:
    try:
        report = drive(argv)
    except Exception as error:
        report = {
            "error": type(error).__name__,
            "classes": [cls.__name__ for cls in type(error).__mro__],
            "message": str(error),
        }
        print(json.dumps(report), flush=True)
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
