"""What the link is doing, what may be sent over it, and how fast.

* ``LinkMonitor`` measures achieved throughput (from PATCH timings) and round-trip time (from HEAD and
  POST timings) as smoothed averages, counts failures, and names the link's state.
* ``LinkPolicy`` decides which priority classes may use the link: on a thin (measured below a threshold)
  or metered link only the urgent classes go; on a good link, everything.
* ``RatePacer`` is the upload cap (``--max-upload-rate``): a token bucket shared by every upload, so
  that sync never starves the ship's other traffic.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

from sync_protocol.limits import MAX_PRIORITY_CLASS
from sync_protocol.token_bucket import TokenBucket
from sync_protocol.units import format_rate

SMOOTHING = 0.3
"""Weight of the newest sample: follows a port call or a satellite handover within a few chunks."""

DEFAULT_THIN_BELOW_BPS = 1_000_000
"""Below 1 Mbit/s a link is "thin": a VSAT link at sea (256 kbit/s - 2 Mbit/s) rather than port Wi-Fi or 4G."""

DEFAULT_THIN_MAX_CLASS = 1
"""On a thin or metered link, classes 0 (alarms) and 1 (operational telemetry) still go; bulk waits for port."""


class LinkState(enum.Enum):
    UNKNOWN = "unknown"  # nothing measured yet
    DOWN = "down"  # the last attempt failed and nothing succeeded since
    THIN = "thin"  # up, measured below the policy's threshold
    GOOD = "good"


@dataclass
class LinkMonitor:
    clock: Callable[[], float]
    thin_below_bps: float = DEFAULT_THIN_BELOW_BPS
    rate_bytes: float | None = None
    rtt_seconds: float | None = None
    failures_in_a_row: int = 0
    last_error: str = ""
    last_success_at: float | None = None
    bytes_acked_by_link: int = 0

    def record_transfer(self, n_bytes: int, seconds: float, sharing: int = 1) -> None:
        """A chunk of ``n_bytes`` took ``seconds`` while ``sharing`` uploads shared the link: the link's
        rate is about the chunk's own rate times the number of uploads that were on it."""
        self._success()
        self.bytes_acked_by_link += n_bytes
        if seconds > 0 and n_bytes > 0:
            self.rate_bytes = _smooth(self.rate_bytes, n_bytes / seconds * max(1, sharing))

    def record_round_trip(self, seconds: float) -> None:
        self._success()
        if seconds > 0:
            self.rtt_seconds = _smooth(self.rtt_seconds, seconds)

    def record_failure(self, reason: str) -> None:
        self.failures_in_a_row += 1
        self.last_error = reason

    def _success(self) -> None:
        self.failures_in_a_row = 0
        self.last_success_at = self.clock()

    @property
    def state(self) -> LinkState:
        if self.failures_in_a_row > 0:
            return LinkState.DOWN
        return self.measured_state

    @property
    def measured_state(self) -> LinkState:
        """What the link is when it works, from the last measured rate: what the policy decides by, so
        that one cut on a thin satellite link does not open it to bulk classes."""
        if self.rate_bytes is None:
            return LinkState.UNKNOWN
        return LinkState.THIN if self.rate_bytes * 8 < self.thin_below_bps else LinkState.GOOD

    def describe(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "measured_rate": format_rate(self.rate_bytes * 8) if self.rate_bytes else None,
            "measured_rate_bps": round(self.rate_bytes * 8) if self.rate_bytes else None,
            "rtt_ms": round(self.rtt_seconds * 1000) if self.rtt_seconds else None,
            "failures_in_a_row": self.failures_in_a_row,
            "last_error": self.last_error or None,
            "last_success_at": self.last_success_at,
        }


def _smooth(old: float | None, sample: float) -> float:
    return sample if old is None else SMOOTHING * sample + (1 - SMOOTHING) * old


@dataclass(frozen=True)
class LinkPolicy:
    thin_max_class: int = DEFAULT_THIN_MAX_CLASS
    metered: bool = False  # set by the crew or the ship's systems: "at sea, every byte costs"

    def __post_init__(self) -> None:
        if not 0 <= self.thin_max_class <= MAX_PRIORITY_CLASS:
            raise ValueError(f"thin-link class must be 0..{MAX_PRIORITY_CLASS}, got {self.thin_max_class}")

    def max_class(self, state: LinkState) -> int:
        """The lowest-urgency class (highest number) that may be sent now. An unknown link is treated as
        good until measured: the first chunk measures it, and a thin link then holds bulk back."""
        if self.metered or state is LinkState.THIN:
            return self.thin_max_class
        return MAX_PRIORITY_CLASS

    def allows(self, priority: int, state: LinkState) -> bool:
        return priority <= self.max_class(state)


class RatePacer:
    """The upload cap: ``take(n)`` returns when ``n`` more bytes may go. ``None`` = no cap."""

    def __init__(self, rate_bps: float | None, clock: Callable[[], float]) -> None:
        self.rate_bps = rate_bps
        self._clock = clock
        self._bucket = TokenBucket(rate_bps / 8 if rate_bps else None, now=clock())

    async def take(self, n: int) -> None:
        delay = self._bucket.reserve(n, self._clock())
        if delay > 0:
            await asyncio.sleep(delay)
