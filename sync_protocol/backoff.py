"""How long to wait before trying again: exponential back-off with jitter, capped, as a pure function.

One rule for every retry on the edge (the uploader after a transient failure on the link, the agent after a
segment file could not be read), so the two cannot drift apart. The jitter comes from an rng the caller
passes in (the node seeds one; a scenario passes its seed), so a failing run replays from its seed: no
module-level ``random`` here or in the callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MAX_DOUBLINGS = 62
"""The exponent stops growing here: far past any cap, and ``2 ** failures`` after weeks offline would
otherwise overflow a float."""


class Rng(Protocol):
    """What the back-off needs of a random generator (``random.Random`` has it)."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class Backoff:
    first_seconds: float
    """The wait after the first failure that is waited for; each further failure doubles it."""
    cap_seconds: float
    """No wait is longer (jitter included): a retry is cheap, and a long wait can outlast a port call."""
    jitter_seconds: float = 1.0
    """Up to this much is added at random, so that uploads cut together do not retry in lockstep."""
    free_failures: int = 0
    """This many failures in a row are retried at once (a single cut is best answered by reconnecting now)."""

    def __post_init__(self) -> None:
        if self.first_seconds < 0 or self.cap_seconds < 0 or self.jitter_seconds < 0 or self.free_failures < 0:
            raise ValueError("back-off times and the number of free failures cannot be negative")

    def seconds(self, failures: int, rng: Rng) -> float:
        """The wait after ``failures`` failures in a row (counted since the last progress)."""
        waited = failures - self.free_failures
        if waited <= 0:
            return 0.0
        doubling = 2.0 ** min(waited - 1, MAX_DOUBLINGS)
        return min(self.cap_seconds, self.first_seconds * doubling + self.jitter_seconds * rng.random())
