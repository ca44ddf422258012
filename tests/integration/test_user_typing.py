"""A user's type checker sees tasks as their callers use them: no TaskControl argument, real types."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

pytestmark = pytest.mark.integration

USER_CODE = """
from taskloom import TaskControl, task


@task
def reports(tc: TaskControl, n: int) -> int:
    return n


@task(max_parallel=2)
def limited(tc: TaskControl, n: int) -> int:
    return n


@task.with_options(retry_max_attempts=1)
def plain(n: int) -> int:
    return n


@task
async def later(n: int) -> int:
    return n


reports(3)
limited(3)
plain(3)
later(1)
reports.instance().start(3)
plain("three")
"""


def test_callers_pass_no_task_control_and_wrong_argument_types_are_caught(tmp_path: Path) -> None:
    user_file = tmp_path / "user_code.py"
    user_file.write_text(USER_CODE)
    out, err, status = api.run(["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(user_file)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1 and len(errors) == 1, out + err
    assert 'incompatible type "str"; expected "int"' in errors[0]
    bad_line = USER_CODE.splitlines().index('plain("three")') + 1
    assert errors[0].startswith(f"{user_file}:{bad_line}:")
