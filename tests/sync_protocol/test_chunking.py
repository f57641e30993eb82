from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.chunking import ChunkSizer
from sync_protocol.limits import CHUNK_TARGET_SECONDS, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES


def test_a_thin_link_gets_small_chunks_and_a_fat_one_large():
    thin, fat = ChunkSizer(), ChunkSizer()
    for _ in range(10):
        thin.on_success(thin.size, thin.size / 32_000)  # 256 kbit/s
        fat.on_success(fat.size, fat.size / 12_500_000)  # 100 Mbit/s
    assert thin.size == pytest.approx(32_000 * CHUNK_TARGET_SECONDS, rel=0.05)
    assert fat.size == MAX_CHUNK_BYTES


def test_cuts_halve_down_to_the_minimum():
    sizer = ChunkSizer()
    for _ in range(40):
        sizer.on_cut()
    assert sizer.size == MIN_CHUNK_BYTES


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        ChunkSizer(size=1, minimum=10, maximum=100)


@given(st.lists(st.one_of(st.none(), st.tuples(st.integers(0, 10**8), st.floats(0, 100)))))
def test_size_always_stays_within_bounds(events):
    sizer = ChunkSizer()
    for event in events:
        if event is None:
            sizer.on_cut()
        else:
            sizer.on_success(*event)
        assert MIN_CHUNK_BYTES <= sizer.size <= MAX_CHUNK_BYTES


def test_after_a_cut_chunks_stay_below_the_size_that_was_cut_for_a_while():
    sizer = ChunkSizer(size=64 * 1024)
    sizer.on_cut()  # 64 KiB was cut
    for _ in range(10):
        sizer.on_success(sizer.size, 0.001)  # a fast link would grow straight back
        assert sizer.size < 64 * 1024
    for _ in range(20):
        sizer.on_success(sizer.size, 0.001)
    assert sizer.size > 64 * 1024  # the memory of the cut fades
