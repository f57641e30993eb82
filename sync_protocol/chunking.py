"""How big the next chunk is: small on a thin, cut-prone link, large in port.

A cut costs the chunk in flight (G3), so on a bad link chunks must be small; on a good one, large
chunks keep request overhead and round trips negligible. The sizer aims for chunks that take
``CHUNK_TARGET_SECONDS`` at the measured rate, halves on every cut, and never leaves
``MIN_CHUNK_BYTES..MAX_CHUNK_BYTES``. Timings are measured by the caller and passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from .limits import CHUNK_TARGET_SECONDS, DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES

RATE_SMOOTHING = 0.3
"""Weight of the newest sample in the rate average: follows a link change within ~3 chunks without
jumping at one lucky or unlucky chunk."""

GROWTH_LIMIT = 4
"""A chunk is at most 4x the previous one, so one fast chunk on a flapping link cannot make the next
one so large that the next cut is expensive."""

CEILING_MEMORY = 16
"""After a cut, chunks stay below the size that was cut for this many successful chunks: a link that
drops every ~30 KB would otherwise see the sizer grow straight back into the cut, over and over."""


@dataclass
class ChunkSizer:
    size: int = DEFAULT_CHUNK_BYTES
    minimum: int = MIN_CHUNK_BYTES
    maximum: int = MAX_CHUNK_BYTES
    rate: float | None = None  # bytes per second, smoothed
    ceiling: int | None = None  # size of the last chunk that was cut, remembered for a while
    successes_since_cut: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.size <= self.maximum:
            raise ValueError(f"chunk sizes must satisfy 0 < {self.minimum} <= {self.size} <= {self.maximum}")

    def on_success(self, sent_bytes: int, seconds: float) -> None:
        if sent_bytes <= 0 or not seconds > 0:  # also refuses NaN
            return
        sample = sent_bytes / seconds
        self.rate = sample if self.rate is None else RATE_SMOOTHING * sample + (1 - RATE_SMOOTHING) * self.rate
        # min() before int(): a chunk timed at ~0 s gives an infinite rate, which int() cannot take.
        target = min(self.rate * CHUNK_TARGET_SECONDS, self.maximum, self.size * GROWTH_LIMIT)
        if self.ceiling is not None:
            self.successes_since_cut += 1
            if self.successes_since_cut > CEILING_MEMORY:
                self.ceiling = None
            else:
                target = min(target, self.ceiling * 3 // 4)
        self.size = max(self.minimum, int(target))

    def on_cut(self) -> None:
        self.ceiling = self.size if self.ceiling is None else min(self.ceiling, self.size)
        self.successes_since_cut = 0
        self.size = max(self.minimum, self.size // 2)
