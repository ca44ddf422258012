"""A Flux user's task code: reading a task's options back, and ``cache=True``.

Flux code inspects its tasks (``t.func``, ``t.name``, ``t.retry_max_attempts``, ``isinstance(t, task)``)
and marks expensive, repeatable calls ``cache=True`` so that a result is reused, across executions, for
the same arguments. In taskloom the cache lives in the store (every worker on the database shares it),
a hit is still recorded as the step's outcome, and ``t.clear_cache()`` (or ``taskloom cache clear
exchange_rate``) forgets it.
"""

from taskloom import WorkflowExecutionContext, task, workflow

fetched: list[str] = []
RATES = {"EUR": 1.08, "GBP": 1.27}


@task.with_options(name="exchange_rate", retry_max_attempts=2, retry_delay=1, timeout=10, cache=True)
async def fetch_rate(currency: str) -> float:
    fetched.append(currency)  # stands in for a slow, metered API call
    return RATES[currency]


@task
def convert(amount: float, rate: float) -> float:
    return round(amount * rate, 2)


@workflow
async def convert_workflow(ctx: WorkflowExecutionContext[dict]):
    rate = await fetch_rate(ctx.input["currency"])
    return await convert(ctx.input["amount"], rate)


if __name__ == "__main__":
    # The task's options, read back as attributes, as Flux code does.
    assert isinstance(fetch_rate, task) and not isinstance(convert.func, task)
    assert fetch_rate.func.__name__ == "fetch_rate"
    assert (fetch_rate.name, fetch_rate.retry_max_attempts, fetch_rate.timeout) == ("exchange_rate", 2, 10)
    assert fetch_rate.cache and not convert.cache
    assert (convert.fallback, convert.rollback, convert.secret_requests) == (None, None, [])

    # Two executions, one call of the API: the second execution's step is served from the cache...
    first = convert_workflow.run({"currency": "EUR", "amount": 100})
    second = convert_workflow.run({"currency": "EUR", "amount": 250})
    assert first.has_succeeded and second.has_succeeded, (first.output, second.output)
    assert fetched == ["EUR"], fetched
    # ...and still recorded as that step's outcome, so its replay is the same as if it had run.
    step = next(e for e in second.events if e.type == "step_completed" and e.name == "exchange_rate")
    assert step.value == 1.08, step

    # Another currency is another call; clearing the cache makes the next execution call again.
    assert convert_workflow.run({"currency": "GBP", "amount": 10}).output == 12.7
    assert fetch_rate.clear_cache() == 2
    third = convert_workflow.run({"currency": "EUR", "amount": 100})
    assert fetched == ["EUR", "GBP", "EUR"], fetched

    print("fetched:", fetched)
    print("result:", [first.output, second.output, third.output], f"with {len(fetched)} API calls")
