"""Fixtures of the power-loss tests: the power-cut filesystem mounted on a tmp dir (``scenarios.powercut``)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from scenarios.powercut import PowerCutMount, unavailable


@pytest.fixture
def powercut(tmp_path) -> Iterator[PowerCutMount]:
    reason = unavailable()
    if reason:
        pytest.skip(f"the power-loss harness needs FUSE: {reason}")
    with PowerCutMount(tmp_path / "powercut") as mount:
        yield mount


@pytest.fixture
def seeded_rng() -> random.Random:
    """The run's randomness, printed so a failure can be replayed: HARBOUR_TEST_SEED=N."""
    seed = int(os.environ.get("HARBOUR_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"power-loss seed {seed} (replay with HARBOUR_TEST_SEED={seed})")
    return random.Random(seed)
