"""Render the CLI's look in a terminal to SVG for the README: `python docs/make_cli_screenshots.py`.

It runs the demo workflow and a failing one on a throwaway store, then replays their real events through
the CLI's own live view (`taskloom.cli.progress.EventPrinter` drawing on a recording rich console) and
saves two frames: the demo mid-run (bars for the running steps under the lines already printed) and a
failed run with its traceback.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.text import Text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WIDTH = 100


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ["TASKLOOM_HOME"] = home
        sys.path.insert(0, str(ROOT / "examples"))
        from taskloom.cli.progress import EventPrinter
        from taskloom.store import default_store

        env = {**os.environ, "TASKLOOM_HOME": home, "COLUMNS": str(WIDTH)}
        subprocess.run([sys.executable, "demo.py"], cwd=ROOT / "examples", env=env, check=True, capture_output=True)
        store = default_store()
        record = store.list_executions(limit=1)[0]
        events = store.load_events(record.id)

        lines = io.StringIO()
        plain = EventPrinter(lines, live=False)
        running = EventPrinter(io.StringIO(), live=True)
        # the moment the first price lookup failed and is retried: validate done, three lookups running
        cut = next(i for i, e in enumerate(events) if e.type.value == "step_retrying") + 1
        plain.feed(events[:cut])
        running.feed(events[:cut])
        console = Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True)
        console.print(f"$ taskloom run demo:fulfil_order '{{...}}'\nexecution {record.id} of workflow 'fulfil_order'")
        for line in lines.getvalue().splitlines():
            if line.startswith(("✓", "✗", "↻", "↺")) or re.match(r"  \[[a-z]+\] ", line):  # the rest are bars
                console.print(Text(line))
        assert running._bars is not None
        console.print(running._bars.progress.get_renderable())
        running.close()
        console.save_svg(str(HERE / "cli-run.svg"), title="taskloom run")

        failed = subprocess.run(
            [sys.executable, "-m", "taskloom", "run", "cliapp.flows:broken", '"no stock for sku-7"'],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT / "tests" / "integration")},
            capture_output=True,
            text=True,
        )
        console = Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True)
        console.print(Text("$ taskloom run cliapp.flows:broken '\"no stock for sku-7\"'"))
        shown = [line for line in failed.stdout.splitlines() if not line.startswith("▶")]  # a bar, on a terminal
        console.print(Text("\n".join(shown)))
        console.print(Text(failed.stderr.rstrip(), style="red"))
        console.save_svg(str(HERE / "cli-failed.svg"), title="taskloom run: a failed workflow")
    print("wrote docs/cli-run.svg and docs/cli-failed.svg")


if __name__ == "__main__":
    main()
