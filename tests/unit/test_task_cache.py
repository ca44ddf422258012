"""Flux's ``cache=True``: a task's result is reused across calls, executions and processes for equal
arguments, on SQLite and PostgreSQL (the default store of each test).

A hit inside a workflow is recorded as the step's outcome, so the log and replay are as if it had run.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskloom import SerializationError, TaskControl, WorkflowExecutionContext, task, workflow
from taskloom import cache as cache_module
from taskloom.cli.main import main as cli_main
from taskloom.events import EventType
from taskloom.outputs import LocalFileOutputStorage
from taskloom.store import default_store, open_store
from taskloom.tasks import pause

runs: list[Any] = []


@pytest.fixture(autouse=True)
def reset_runs() -> None:
    runs.clear()


@task(cache=True)
def price(item: str, quantity: int = 1) -> float:
    runs.append((item, quantity))
    return 2.5 * quantity


@task(cache=True)
async def aprice(item: str) -> str:
    runs.append(item)
    return item.upper()


@task(cache=True, cache_ttl=60)
def quote(item: str) -> int:
    runs.append(item)
    return len(runs)


@task(cache=True)
def nothing(item: str) -> None:
    runs.append(item)


@task.with_options(cache=True, retry_max_attempts=1, retry_delay=0, fallback=lambda item: f"fallback {item}")
def flaky(item: str) -> str:
    runs.append(item)
    raise ConnectionError("service down")


@task(cache=True)
def failing(item: str) -> str:
    runs.append(item)
    raise ValueError(item)


@task(cache=True)
def controlled(tc: TaskControl, item: str) -> str:
    runs.append(item)
    return f"{item} by {tc.task_definition_name}"


@dataclass(frozen=True)
class Order:
    id: str
    tags: frozenset[str]


@task(cache=True)
def describe(order: Order, extras: dict[str, Any]) -> str:
    runs.append(order.id)
    return f"{order.id}: {sorted(order.tags)} {sorted(extras)}"


# -- direct calls ------------------------------------------------------------------------------------
def test_equal_arguments_run_the_function_once_and_return_the_cached_result() -> None:
    assert price("apple", 2) == 5.0
    assert price("apple", 2) == 5.0
    assert price("pear", 2) == 5.0

    assert runs == [("apple", 2), ("pear", 2)]


def test_arguments_are_compared_after_binding_so_positional_keyword_and_default_are_one_call() -> None:
    price("apple")
    price("apple", 1)
    price(item="apple", quantity=1)
    price("apple", quantity=1)

    assert runs == [("apple", 1)]


def test_an_async_task_is_cached_too() -> None:
    assert asyncio.run(aprice("kiwi")) == "KIWI"
    assert asyncio.run(aprice("kiwi")) == "KIWI"

    assert runs == ["kiwi"]


def test_a_result_of_none_is_cached_like_any_other() -> None:
    assert nothing("x") is None
    assert nothing("x") is None

    assert runs == ["x"]


def test_dicts_and_sets_in_other_orders_are_the_same_arguments() -> None:
    first = describe(Order("o-1", frozenset({"red", "big", "new"})), {"a": 1, "b": [1, 2]})
    second = describe(Order("o-1", frozenset({"new", "red", "big"})), {"b": [1, 2], "a": 1})

    assert first == second
    assert runs == ["o-1"]


def test_arguments_that_differ_only_in_type_are_different_calls() -> None:
    @task(cache=True, name="typed")
    def typed(value: Any) -> str:
        runs.append(value)
        return repr(value)

    for value in (1, 1.0, "1", True, (1,), [1], {1}):
        typed(value)

    assert len(runs) == 7


def test_the_control_is_not_part_of_the_key() -> None:
    assert controlled("a") == "a by controlled"
    assert controlled("a") == "a by controlled"

    assert runs == ["a"]


def test_a_fallback_result_is_not_cached_so_the_next_call_tries_again() -> None:
    assert flaky("x") == "fallback x"
    assert flaky("x") == "fallback x"

    assert runs == ["x", "x", "x", "x"]  # two attempts per call, nothing served from the cache


def test_a_failure_is_not_cached() -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="y"):
            failing("y")

    assert runs == ["y", "y"]


def test_a_result_expires_after_cache_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(cache_module, "_now", lambda: clock[0])
    assert quote("a") == 1

    clock[0] += 59
    assert quote("a") == 1
    clock[0] += 1
    assert quote("a") == 2

    assert runs == ["a", "a"]


def test_cached_results_are_shared_by_tasks_of_the_same_name_and_kept_apart_by_name() -> None:
    @task(cache=True, name="price")
    def same_name(item: str, quantity: int = 1) -> float:
        runs.append("same_name")
        return 0.0

    @task(cache=True, name="other")
    def other_name(item: str, quantity: int = 1) -> float:
        runs.append("other_name")
        return 0.0

    price("fig")
    assert same_name("fig") == 2.5
    assert other_name("fig") == 0.0

    assert runs == [("fig", 1), "other_name"]


def test_clear_cache_makes_the_next_call_run_again() -> None:
    price("plum")
    quote("plum")

    assert price.clear_cache() == 1
    price("plum")
    quote("plum")

    assert runs == [("plum", 1), "plum", ("plum", 1)]


def test_the_cli_clears_one_task_or_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    price("date")
    quote("date")

    assert cli_main(["cache", "clear", "price"]) == 0
    assert "cleared 1 cached result(s) of task 'price'" in capsys.readouterr().out
    price("date")
    quote("date")
    assert runs == [("date", 1), "date", ("date", 1)]

    assert cli_main(["cache", "clear", "--json"]) == 0
    assert '"cleared": 2' in capsys.readouterr().out
    price("date")
    assert runs[-1] == ("date", 1) and len(runs) == 4


def test_the_cli_clears_only_expired_results_when_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(cache_module, "_now", lambda: clock[0])
    quote("old")
    clock[0] += 30
    quote("new")
    price("forever")
    clock[0] += 45  # "old" expired, "new" has 15 s left, "forever" never expires

    assert cli_main(["cache", "clear", "--expired"]) == 0

    assert "cleared 1 expired cached result(s) of every task" in capsys.readouterr().out
    assert quote("new") == 2 and price("forever") == 2.5
    assert len(runs) == 3


def test_an_argument_that_cannot_be_keyed_fails_naming_the_task_and_argument_before_running() -> None:
    class Opaque:
        def __reduce_ex__(self, protocol: Any) -> Any:
            raise TypeError("no")

    @task(cache=True, name="opaque")
    def takes(thing: Any) -> str:
        runs.append(thing)
        return "ran"

    with pytest.raises(SerializationError, match=r"task 'opaque' \(cache=True\) argument 'thing'"):
        takes(Opaque())
    assert runs == []


def test_a_cached_entry_this_code_cannot_read_is_a_miss_and_is_replaced() -> None:
    key = cache_module.argument_key(price, ("lime",), {})
    assert key is not None
    default_store().put_cached_result("price", key, b"not a pickle", None)

    assert price("lime") == 2.5
    assert price("lime") == 2.5

    assert runs == [("lime", 1)]


def test_with_output_storage_the_cache_keeps_a_reference_and_the_storage_the_value(tmp_path: Path) -> None:
    storage = LocalFileOutputStorage(tmp_path / "outputs")

    @task(cache=True, output_storage=storage, name="big")
    def big(n: int) -> list[int]:
        runs.append(n)
        return list(range(n))

    assert big(1000) == list(range(1000))
    assert big(1000) == list(range(1000))

    assert runs == [1000]
    assert len(list((tmp_path / "outputs").iterdir())) == 1
    key = cache_module.argument_key(big, (1000,), {})
    assert key is not None
    blob = default_store().get_cached_result("big", key, cache_module._now())
    assert blob is not None and len(blob) < 200  # a reference, not the list


def test_the_key_is_the_same_in_another_process_with_another_hash_seed(tmp_path: Path) -> None:
    module = tmp_path / "cached_app.py"
    module.write_text(
        textwrap.dedent(
            """
            import os
            from taskloom import task

            @task(cache=True)
            def who_ran(tags, table):
                return os.getpid()
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import cached_app  # type: ignore[import-not-found]

        tags, table = {"alpha", "beta", "gamma", "delta"}, {"x": {"y", "z"}, "w": 1}
        here = cached_app.who_ran(tags, table)
        script = (
            "import cached_app; "
            "print(cached_app.who_ran({'delta', 'gamma', 'beta', 'alpha'}, {'w': 1, 'x': {'z', 'y'}}))"
        )
        for seed in ("1", "2"):
            env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(tmp_path)}
            done = subprocess.run(
                [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
            )
            assert done.returncode == 0, done.stderr
            assert int(done.stdout.strip()) == here  # served from the cache this process filled
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cached_app", None)


# -- in workflows ------------------------------------------------------------------------------------
@workflow
async def checkout(ctx: WorkflowExecutionContext[str]) -> list[float]:
    first = await price(ctx.input, 2)
    second = await price(ctx.input, 2)
    return [first, second]


@workflow
async def approve_quote(ctx: WorkflowExecutionContext[str]) -> tuple[float, Any]:
    value = await price(ctx.input, 3)
    answer = await pause("approve")
    return value, answer


def _completed_steps(events: list[Any]) -> list[tuple[str, Any]]:
    return [(e.name, e.value) for e in events if e.type == EventType.STEP_COMPLETED]


def test_in_a_workflow_a_hit_is_recorded_as_the_step_outcome_in_this_and_later_executions() -> None:
    one = checkout.run("melon")
    two = checkout.run("melon")

    assert one.output == two.output == [5.0, 5.0]
    assert runs == [("melon", 2)]  # once, for all four steps of both executions
    assert _completed_steps(one.events) == _completed_steps(two.events) == [("price", 5.0), ("price", 5.0)]


def test_a_workflow_hit_shares_the_cache_with_direct_calls() -> None:
    price("grape", 2)

    assert checkout.run("grape").output == [5.0, 5.0]

    assert runs == [("grape", 2)]


def test_replay_returns_the_recorded_value_even_after_the_cache_was_cleared() -> None:
    price("pear", 3)  # the workflow's step is a hit
    paused = approve_quote.run("pear")
    assert paused.is_paused
    price.clear_cache()

    done = approve_quote.resume(paused.execution_id, "yes")

    assert done.output == (7.5, "yes")
    assert runs == [("pear", 3)]  # the replayed step came from the log, not from a new run
    assert _completed_steps(done.events)[0] == ("price", 7.5)


def test_a_workflow_run_on_another_store_caches_in_that_store(tmp_path: Path) -> None:
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        ctx = asyncio.run(checkout.arun("fig", store=other))
        key = cache_module.argument_key(price, ("fig", 2), {})
        assert key is not None

        assert ctx.output == [5.0, 5.0]
        assert other.get_cached_result("price", key, cache_module._now()) is not None
        assert default_store().get_cached_result("price", key, cache_module._now()) is None
    finally:
        other.close()
