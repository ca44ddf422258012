"""The delay arithmetic of retry_jitter and retry_max_delay, with a seeded generator, and the options'
validation at decoration time."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from taskloom import TaskDefinitionError, task
from taskloom.options import TaskOptions


def options(**given: Any) -> TaskOptions:
    return TaskOptions.build("task 't'", **given)


def test_without_jitter_or_cap_the_delays_are_the_plain_backoff() -> None:
    plain = options(retry_max_attempts=4, retry_delay=0.5, retry_backoff=3)
    assert plain.retry_delays(random.Random(1)) == [0.5, 1.5, 4.5, 13.5]


def test_retry_max_delay_caps_each_delay_after_backoff() -> None:
    capped = options(retry_max_attempts=5, retry_delay=1, retry_backoff=10, retry_max_delay=50)
    assert capped.retry_delays() == [1, 10, 50, 50, 50]


def test_a_cap_holds_even_where_the_backoff_overflows_a_float() -> None:
    huge = options(retry_max_attempts=400, retry_delay=1, retry_backoff=1e10, retry_max_delay=3)
    assert huge.retry_delays()[-1] == 3


def test_jitter_takes_a_random_fraction_off_each_capped_delay() -> None:
    jittered = options(retry_max_attempts=6, retry_delay=1, retry_backoff=2, retry_jitter=0.5, retry_max_delay=8)
    draws = random.Random(42)
    expected = [d * (1 - 0.5 * draws.random()) for d in (1, 2, 4, 8, 8, 8)]
    assert jittered.retry_delays(random.Random(42)) == expected


def test_jittered_delays_stay_between_one_minus_jitter_and_the_base() -> None:
    jittered = options(retry_max_attempts=8, retry_delay=2, retry_backoff=1.5, retry_jitter=0.3, retry_max_delay=6)
    base = options(retry_max_attempts=8, retry_delay=2, retry_backoff=1.5, retry_max_delay=6).retry_delays()
    for seed in range(50):
        delays = jittered.retry_delays(random.Random(seed))
        assert all(0.7 * b <= d <= b for d, b in zip(delays, base, strict=True))
        assert delays != base


def test_the_same_seed_gives_the_same_delays_and_another_seed_others() -> None:
    jittered = options(retry_max_attempts=5, retry_delay=1, retry_jitter=1)
    assert jittered.retry_delays(random.Random(7)) == jittered.retry_delays(random.Random(7))
    assert jittered.retry_delays(random.Random(7)) != jittered.retry_delays(random.Random(8))


def test_retry_on_takes_a_class_a_tuple_or_a_list() -> None:
    assert task(retry_on=ValueError)(lambda: None).retry_on == (ValueError,)
    assert task(retry_on=[KeyError, OSError])(lambda: None).retry_on == (KeyError, OSError)
    assert task(lambda: None).retry_on == (Exception,)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retry_on", "ValueError"),
        ("retry_on", ()),
        ("retry_on", KeyboardInterrupt),
        ("retry_on", (ValueError, 3)),
        ("retry_on", ValueError("not a class")),
        ("retry_jitter", 1.5),
        ("retry_jitter", -0.1),
        ("retry_jitter", True),
        ("retry_jitter", math.nan),
        ("retry_jitter", "0.2"),
        ("retry_max_delay", -1),
        ("retry_max_delay", "5"),
        ("retry_max_delay", math.inf),
    ],
)
def test_a_bad_value_fails_at_decoration_naming_the_option_and_the_task(option: str, value: Any) -> None:
    with pytest.raises(TaskDefinitionError, match=rf"^task 'charge': option '{option}' must be "):
        task(name="charge", **{option: value})
    plain = task(lambda: None)
    with pytest.raises(TaskDefinitionError, match=rf"^task '<lambda>': option '{option}' must be "):
        plain.with_options(**{option: value})
