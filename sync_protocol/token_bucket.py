"""A token bucket as arithmetic: how long must ``n`` bytes wait at this rate? (pure: time is passed in)

Both the edge's upload cap (``--max-upload-rate``) and the scenario link proxy meter bytes with it;
each wraps it in its own ``asyncio.sleep``.
"""

from __future__ import annotations

from dataclasses import dataclass

BURST_SECONDS = 0.05
"""Bucket depth in seconds of the rate: 50 ms keeps bursts short enough that a capped agent never
floods the ship's other traffic for more than a blink."""

MIN_BURST_BYTES = 16 * 1024
"""Depth floor: one socket read's worth, so a single read never waits for more than the bucket holds."""


@dataclass
class TokenBucket:
    rate: float | None  # bytes per second; None = unlimited
    now: float  # the time the bucket was last updated, from the caller's clock
    tokens: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = self.burst

    @property
    def burst(self) -> float:
        return max(MIN_BURST_BYTES, (self.rate or 0) * BURST_SECONDS)

    def set_rate(self, rate: float | None, now: float) -> None:
        self._refill(now)
        self.rate = rate
        self.tokens = min(self.tokens, self.burst)

    def _refill(self, now: float) -> None:
        if self.rate:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.now) * self.rate)
        self.now = max(self.now, now)

    def reserve(self, n: int, now: float) -> float:
        """Take ``n`` bytes' worth of tokens and return how many seconds to wait before sending them.
        Tokens may go negative: the debt is what makes later callers wait, so the rate holds on average."""
        if not self.rate:
            return 0.0
        self._refill(now)
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
