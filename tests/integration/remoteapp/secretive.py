"""A task that puts its secret everywhere it can; only the masking test's own worker imports this module."""

from __future__ import annotations

from taskloom import TaskControl, task

SECRET_NAME = "REMOTE_API_KEY"


@task(secret_requests=[SECRET_NAME])
def leaks(tc: TaskControl, fail: bool, secrets: dict[str, str] = {}) -> str:  # noqa: B006
    key = secrets[SECRET_NAME]
    tc.log(f"calling with {key}", key=key)
    tc.update_progress(50, f"half way with {key}")
    tc.update_status(f"authenticated as {key}")
    if fail:
        raise PermissionError(f"the API refused {key}")
    return f"token={key}"
