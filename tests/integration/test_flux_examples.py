"""Every example runs as its own process on a throwaway store and prints what its documents promise.

Each example asserts its own behaviour and exits non-zero when the library does not do what the
document says; this test checks the exit code and one line of the expected output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: per example, the line (or lines) its stdout must contain
EXPECTED: dict[str, str | tuple[str, ...]] = {
    "flux/basic_task.py": "result: HELLO FLUX",
    "flux/configured_task.py": "result: REPORT (signed with a 21-character key)",
    "flux/retry_configuration.py": "result: succeeded on attempt 3",
    "flux/timeout_configuration.py": "result: failed TaskTimeoutError",
    "flux/fallback_configuration.py": "result: fallback result",
    "flux/rollback_configuration.py": "result: caught ValueError: cannot write 'record-7'",
    "flux/parallel_execution.py": "result: ['one', 'two', 'three']",
    "flux/pipeline_processing.py": "result: HELLO PIPELINE!",
    "flux/task_mapping.py": "result: ['A', 'B', 'C']",
    "flux/retry_mechanism.py": "result: success",
    "flux/fallback_strategy.py": "result: fallback result",
    "flux/rollback_operations.py": "result: failed OSError disk full",
    "flux/timeout_handling.py": "result: fallback result",
    "flux/time_operations.py": "result: 0:00:00.2",
    "flux/random_operations.py": "result: (",
    "flux/uuid_generation.py": "result: ",
    "flux/workflow_pause.py": "result: Approved: invoice #42 checked",
    "flux/graph_hello_world.py": "result: Hello, World",
    "flux/graph_construction.py": "result: ['5 is positive', '-3 is not positive']",
    "flux/graph_error_handling.py": "result: recovered: caf?",
    "flux/ported_from_flux.py": "result: auto-approved 17.75; missing ['spoon']; comment None",
    "flux/task_attributes_and_cache.py": "result: [108.0, 270.0, 108.0] with 3 API calls",
    "sagas/approval.py": "result: {'expense': 'E-3', 'status': 'rejected'",
    "sagas/order_saga.py": "result: {'order': 'O-3', 'status': 'cancelled', 'reason': 'no carrier delivers to",
    "sagas/http_retry.py": "result: {'eur': 250.0, 'usd': 271.05, 'rate': 1.0842}",
    "demo.py": ("completed in", '"total": 79.92'),
    "schedules.py": "result: every tick ran once, one second apart",
    "start_and_handles.py": "result: 5 orders charged once each: O-1, O-2, O-3, O-4, O-5; O-9 declined",
    "messages.py": "result: 2 items (mug, pen) to 12 Quay St, paid 12.50, note: None",
    "child_workflows.py": "result: charged 42.00 and box-1:shipped, box-2:shipped in 3 child executions",
}


def _discovered() -> list[str]:
    found = [
        p.relative_to(EXAMPLES).as_posix() for folder in ("flux", "sagas") for p in (EXAMPLES / folder).glob("*.py")
    ]
    return [*sorted(found), "child_workflows.py", "demo.py", "messages.py", "schedules.py", "start_and_handles.py"]


def test_every_example_has_an_expected_line() -> None:
    assert sorted(_discovered()) == sorted(EXPECTED), "add the new example's expected output line to EXPECTED"


def _run_example(relative: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = EXAMPLES / relative
    env = {
        **os.environ,
        "TASKLOOM_HOME": str(tmp_path),
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}",
        # demo.py runs itself through the CLI as `demo:fulfil_order`, so its folder must be importable.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(script.parent), os.environ.get("PYTHONPATH")])),
    }
    for name in ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_SECRET_KEY"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.integration
@pytest.mark.parametrize("relative", _discovered())
def test_example_runs_and_prints_its_result(relative: str, tmp_path: Path) -> None:
    result = _run_example(relative, tmp_path)
    output = f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, f"{relative} exited with {result.returncode}\n{output}"
    expected = EXPECTED[relative]
    for line in (expected,) if isinstance(expected, str) else expected:
        assert line in result.stdout, f"{relative}: expected {line!r} in stdout\n{output}"
