"""Every sample of numerous-tasks.md, as a file in ``examples/numerous/``, runs as its own process and
prints what the document says it would; ``14_ported_from_numerous.py`` is Numerous code beyond the
samples (issue 8), and asserts what it prints.

The examples run concurrently (each is a separate Python process), so the whole set takes about as long
as the slowest one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "numerous"

#: example file -> its whole expected stdout
EXPECTED: dict[str, str] = {
    "01_quickstart.py": "{'processed': 5, 'items': [1, 2, 3, 4, 5]}\nProcessed 10 items\n",
    "02_defining_tasks.py": "42\n{'count': 3}\n5 medium\n",
    "03_task_control.py": (
        "25 [0, 2, 4, 6, 8]\n"
        "completed 100.0 Completed\n"
        "info: Starting task execution\n"
        "info: Checkpoint: processed 1 items\n"
        "info: Checkpoint: processed 11 items\n"
        "info: Checkpoint: processed 21 items\n"
        "info: Task finished successfully\n"
    ),
    "04_sessions.py": "data-processing-batch 6 9\n",
    "05_direct_execution.py": "10\n",
    "06_local_instances.py": "10\n",
    "07_remote_execution.py": "49995000\n",
    "08_futures.py": "[0, 2, 4, 6, 8]\n",
    "09_cancellation.py": "Cancelled\n",
    "10_error_handling.py": (
        "Task completed successfully\n"
        "Task failed: Simulated error\n"
        "Future status: failed\n"
        "Future error: Simulated error\n"
    ),
    "11_custom_handler.py": (
        "[INFO] reporting_task: hello world\nProgress: 50.0% - half way\nStatus: finishing\nWORLD\n"
    ),
    "12_batch_processing.py": "".join(f"{{'batch_id': 'batch_{i}', 'processed': 4}}\n" for i in range(10)),
    "13_pipeline.py": (
        "{'stored': {'transformed': {'validated': {'id': 7, 'values': [1, 2, 3]}, 'stage': 1}, 'stage': 2}, "
        "'stage': 3}\nStage 3: Data storage\n"
    ),
    "14_ported_from_numerous.py": (
        "session nightly (nightly-2026-12-01): 3 running, then 0\n"
        "squares [1, 4, 9], first statuses ['', '', '']\n"
        "statuses completed, completed, completed\n"
        "entering it again: session 'nightly' is already active\n"
        "[INFO] crunch: crunching 1\n"
        "[INFO] crunch: crunching 2\n"
        "[INFO] crunch: crunching 3\n" + "progress 100% stopped\n" * 3
    ),
}

#: extra runs: (example, backend) — the "same code, another backend" promise of the document
BACKEND_RUNS: list[tuple[str, str]] = [
    ("06_local_instances.py", "local"),  # `export NUMEROUS_TASK_BACKEND=local`
    ("07_remote_execution.py", "local-process"),
    ("14_ported_from_numerous.py", "local-process"),  # handler, stop and status cross the process boundary
]


def _run(name: str, backend: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKLOOM_")}
    if backend is not None:
        env["TASKLOOM_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        cwd=EXAMPLES,
        timeout=60,
    )


@pytest.fixture(scope="module")
def outcomes() -> dict[tuple[str, str | None], subprocess.CompletedProcess[str]]:
    runs: list[tuple[str, str | None]] = [(name, None) for name in EXPECTED] + list(BACKEND_RUNS)
    with ThreadPoolExecutor(max_workers=8) as pool:
        done = pool.map(lambda run: _run(*run), runs)
        return dict(zip(runs, done, strict=True))


def test_every_sample_has_an_example_and_every_example_a_check() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_prints_what_the_document_says(
    name: str, outcomes: dict[tuple[str, str | None], subprocess.CompletedProcess[str]]
) -> None:
    outcome = outcomes[(name, None)]
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout == EXPECTED[name]


@pytest.mark.parametrize(("name", "backend"), BACKEND_RUNS)
def test_example_runs_the_same_on_another_backend(
    name: str, backend: str, outcomes: dict[tuple[str, str | None], subprocess.CompletedProcess[str]]
) -> None:
    outcome = outcomes[(name, backend)]
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout == EXPECTED[name]
