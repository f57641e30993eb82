"""One back-off for every retry on the edge: exponential, jittered from the rng passed in, capped."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.backoff import Backoff


class FixedRng:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_each_failure_doubles_the_wait_plus_jitter():
    backoff = Backoff(first_seconds=0.5, cap_seconds=20.0, jitter_seconds=1.0)
    assert [backoff.seconds(n, FixedRng(0.0)) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0]
    assert backoff.seconds(1, FixedRng(0.5)) == 1.0


def test_free_failures_are_retried_at_once():
    backoff = Backoff(first_seconds=0.5, cap_seconds=20.0, free_failures=1)
    assert backoff.seconds(0, FixedRng(0.9)) == 0.0 and backoff.seconds(1, FixedRng(0.9)) == 0.0
    assert backoff.seconds(2, FixedRng(0.0)) == 0.5


def test_weeks_offline_do_not_overflow():
    assert Backoff(0.5, 20.0).seconds(10**6, FixedRng(1.0)) == 20.0


def test_the_same_seed_gives_the_same_waits():
    backoff = Backoff(0.5, 20.0, free_failures=1)
    first, again = random.Random("42:ship-1"), random.Random("42:ship-1")
    assert [backoff.seconds(n, first) for n in range(10)] == [backoff.seconds(n, again) for n in range(10)]
    other = random.Random("42:ship-2")
    assert [backoff.seconds(n, first) for n in range(2, 6)] != [backoff.seconds(n, other) for n in range(2, 6)]


@given(st.integers(0, 10**9), st.floats(0.0, 0.999999))
def test_a_wait_is_never_negative_nor_above_the_cap(failures, draw):
    assert 0.0 <= Backoff(2.0, 60.0, free_failures=1).seconds(failures, FixedRng(draw)) <= 60.0


def test_negative_settings_are_refused():
    with pytest.raises(ValueError):
        Backoff(-1.0, 20.0)
