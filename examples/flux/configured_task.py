"""flux-tasks.md, "Configured Task Creation": a task using every option at once.

The secret comes from the encrypted secret store, the result lands in a pickle file of a
``LocalFileOutputStorage`` (the event log keeps only a reference), and when all attempts fail the
fallback gives the result.
"""

import os
from pathlib import Path

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.outputs import LocalFileOutputStorage

OUTPUT_DIR = Path(os.environ.get("TASKLOOM_HOME", ".taskloom")) / "outputs"
custom_storage = LocalFileOutputStorage(OUTPUT_DIR)
rolled_back: list[str] = []


def process_data(data: str, api_key: str) -> str:
    if not data:
        raise ValueError("nothing to process")
    return f"{data.upper()} (signed with a {len(api_key)}-character key)"


def fallback_function(data: str, secrets: dict | None = None) -> str:
    return f"fallback for {data!r}"


def rollback_function(data: str, secrets: dict | None = None) -> None:
    rolled_back.append(data)


@task.with_options(
    name="process_data",  # Custom task name
    retry_max_attempts=3,  # Maximum retry attempts
    retry_delay=1,  # Initial delay between retries
    retry_backoff=2,  # Backoff multiplier
    timeout=30,  # Task timeout in seconds
    fallback=fallback_function,  # Fallback function
    rollback=rollback_function,  # Rollback function
    secret_requests=["API_KEY"],  # Required secrets
    output_storage=custom_storage,  # Custom output storage
)
async def complex_task(data: str, secrets: dict = {}):  # noqa: B006 (the document's signature; never mutated)
    # Task implementation using secrets
    return process_data(data, secrets["API_KEY"])


@workflow
async def configured_workflow(ctx: WorkflowExecutionContext[str]):
    return await complex_task(ctx.input)


if __name__ == "__main__":
    import asyncio

    from taskloom.secret_store import default_secret_store

    secret_value = "sk-example-0123456789"
    default_secret_store().set("API_KEY", secret_value)

    ctx = configured_workflow.run("report")
    assert ctx.has_succeeded, ctx
    assert ctx.output == "REPORT (signed with a 21-character key)", ctx.output
    stored = list(OUTPUT_DIR.glob("*.pickle"))
    assert stored, f"no output file in {OUTPUT_DIR}"
    step = next(e for e in ctx.events if e.type == "step_completed")
    assert step.name == "process_data", step
    assert str(step.value).startswith("file:"), step.value  # only the reference is in the log
    assert all(secret_value.encode() not in (e.raw_value or b"") for e in ctx.events), "secret leaked"

    # All attempts fail (empty data): the fallback gives the result, so the rollback is not needed.
    quick = complex_task.with_options(retry_delay=0.01)
    recovered = asyncio.run(quick(""))
    assert recovered == "fallback for ''", recovered
    assert rolled_back == [], rolled_back

    print("output file:", stored[0].name)
    print("fallback:", recovered)
    print("result:", ctx.output)
