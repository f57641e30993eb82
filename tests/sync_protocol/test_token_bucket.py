from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.token_bucket import TokenBucket


def test_unlimited_never_waits():
    assert TokenBucket(None, now=0).reserve(10**9, now=0) == 0


def test_a_long_transfer_averages_the_rate():
    bucket = TokenBucket(100_000.0, now=0)
    now = 0.0
    for _ in range(100):
        now += bucket.reserve(10_000, now)  # the caller sleeps as told
    assert now == pytest.approx((100 * 10_000 - bucket.burst) / 100_000, rel=0.01)


def test_idle_time_refills_only_up_to_the_burst():
    bucket = TokenBucket(1000.0, now=0)
    bucket.reserve(int(bucket.burst), now=0)
    assert bucket.reserve(1, now=3600) == 0
    assert bucket.tokens <= bucket.burst


@given(st.floats(1, 1e9), st.lists(st.integers(1, 10**6), min_size=1, max_size=50))
def test_bytes_sent_never_exceed_rate_times_time_plus_burst(rate, sizes):
    bucket = TokenBucket(rate, now=0)
    now, sent = 0.0, 0
    for size in sizes:
        now += bucket.reserve(size, now)
        sent += size
        assert sent <= rate * now + bucket.burst + 1e-6 * sent
