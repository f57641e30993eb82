"""What the link is doing, what may be sent over it, and how fast.

* ``LinkMonitor`` estimates the link's capacity and round-trip time from what the uploads achieved, counts
  failures, and names the link's state.
* ``LinkPolicy`` decides which priority classes may use the link: on a thin (measured below a threshold)
  or metered link only the urgent classes go; on a good link, everything.
* ``RatePacer`` is the upload cap (``--max-upload-rate``): a token bucket shared by every upload, so
  that sync never starves the ship's other traffic.

How the capacity is estimated, and why
--------------------------------------
A chunk's own bytes / seconds is not the link's rate: a 4.6 KiB segment on a 50 Mbit/s port link with a
40 ms round trip "measures" 0.9 Mbit/s, because nearly all of its time is the round trip. Taking that as
the rate once kept a whole fleet's bulk data on board through every port call (the link read as thin, and
the probe sent one more tiny chunk that read thin again). So every transfer gives two figures:

* a **lower bound**, ``carried / busy``: the bytes the link carried while this chunk was on it (its own
  bytes times the time-averaged number of chunks in flight with it: concurrent uploads share the link)
  over the time it took. The link did at least this, however latency-bound the chunk was. Any lower bound
  at or above the thin threshold proves the link good.
* a **capacity sample**, ``carried / (busy - rtt)``: the rate once the round trip is taken out. It is only
  believed when the transfer was long enough that the round trip and the hub's own time cannot dominate
  it: the bytes carried would have taken at least ``PROOF_SECONDS`` at the threshold rate. Only such a
  sample can prove a link thin.

The capacity is the largest sample of the last ``CAPACITY_WINDOW_SECONDS`` (one slow chunk behind a busy
hub does not halve it; a handover that really halves the rate shows within the window). Outside the
window the last sample stands, until the link shows it has changed: a round trip less than half, or more
than twice, what it was when measured (a port call after weeks of satellite, a satellite leg after port)
discards every estimate, and the link is measured afresh. RTT is the smallest recent round trip of a HEAD,
POST or a PATCH (each bounds it from above), minus the time the hub says it spent (``Server-Timing``).
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sync_protocol.limits import MAX_PRIORITY_CLASS
from sync_protocol.token_bucket import TokenBucket
from sync_protocol.units import format_rate

DEFAULT_THIN_BELOW_BPS = 1_000_000
"""Below 1 Mbit/s a link is "thin": a VSAT link at sea (256 kbit/s - 2 Mbit/s) rather than port Wi-Fi or 4G."""

DEFAULT_THIN_MAX_CLASS = 1
"""On a thin or metered link, classes 0 (alarms) and 1 (operational telemetry) still go; bulk waits for port."""

PROOF_SECONDS = 0.5
"""A transfer proves a rate below the threshold only if what it carried would have taken at least this long
at the threshold rate (62.5 KB at 1 Mbit/s): a shorter one is dominated by round trips, the hub's fsync
and the scheduler of a busy ship's computer. Probes of a held-back class send at least this much."""

CAPACITY_WINDOW_SECONDS = 10.0
"""Capacity is the largest sample this recent: a few chunks on any link, so a real drop shows quickly."""

LOWER_BOUND_WINDOW_SECONDS = CAPACITY_WINDOW_SECONDS
"""A lower bound proves the link good for as long as a capacity sample counts: on a link that got slower,
an old lower bound must not outlive the samples that show it."""

RTT_WINDOW_SECONDS = 10.0
"""RTT is the smallest round trip of this window and the newest HEAD/POST round trip."""

RTT_CHANGE_FACTOR = 2.0
RTT_CHANGE_MIN_SECONDS = 0.05
"""A round trip that differs from the one under which the capacity was measured by more than this factor
(and by more than 50 ms, so that jitter on a 5 ms LAN does not count) means another link: port after
satellite, or the other way round."""

FRESH_MAX_RTT_SECONDS = 0.25
"""Above this round trip (a geostationary satellite: ~600 ms; terrestrial and low-orbit links stay well
below) a link must be proven good before logs are sealed early. Measured in the 20-ship voyage: sealing
early on unproven satellite links made 16,000 segments of ~3 KB and put 1.6x the rows' Arrow bytes on the
wire (0.32x with segments sealed by age)."""

SMOOTHING = 0.3
"""Weight of the newest RTT sample in the smoothed RTT shown in status."""


class LinkState(enum.Enum):
    UNKNOWN = "unknown"  # up, but nothing has proven it thin or good yet
    DOWN = "down"  # the last attempt failed and nothing succeeded since
    THIN = "thin"  # up, measured below the policy's threshold
    GOOD = "good"


@dataclass(frozen=True)
class _Sample:
    at: float
    rate_bytes: float
    rtt_seconds: float  # the RTT when it was taken: a later, very different RTT means another link


@dataclass
class LinkMonitor:
    clock: Callable[[], float]
    thin_below_bps: float = DEFAULT_THIN_BELOW_BPS
    failures_in_a_row: int = 0
    last_error: str = ""
    last_success_at: float | None = None
    bytes_acked_by_link: int = 0
    changes: int = 0  # how often the link was seen to change (estimates discarded): probes restart then
    smoothed_rtt: float | None = None
    _rtts: deque[tuple[float, float]] = field(default_factory=deque)
    _measured_rtt: float | None = None  # the newest HEAD/POST round trip: stands when the window is empty
    _capacity: deque[_Sample] = field(default_factory=deque)
    _last_capacity: _Sample | None = None
    _lower: deque[_Sample] = field(default_factory=deque)
    _last_lower: _Sample | None = None  # stands when the window is empty (an idle link keeps its state)
    _in_flight: int = 0
    _integral: float = 0.0  # time-integral of chunks in flight, for the average concurrency of a transfer
    _integral_at: float = 0.0

    # -- what the uploads report ----------------------------------------------------------------------

    def transfer_started(self) -> tuple[float, float]:
        """A PATCH body starts; returns the mark ``transfer_ended`` needs."""
        self._advance()
        self._in_flight += 1
        return self._integral_at, self._integral

    def transfer_ended(self, mark: tuple[float, float]) -> float:
        """The PATCH ended (either way); returns the average number of chunks in flight meanwhile (>= 1)."""
        self._advance()
        self._in_flight = max(0, self._in_flight - 1)
        started, integral = mark
        elapsed = self._integral_at - started
        return max(1.0, (self._integral - integral) / elapsed) if elapsed > 0 else 1.0

    def _advance(self) -> None:
        now = self.clock()
        self._integral += self._in_flight * max(0.0, now - self._integral_at)
        self._integral_at = now

    def record_transfer(self, n_bytes: int, seconds: float, *, concurrency: float = 1.0,
                        server_seconds: float = 0.0) -> None:
        """A chunk of ``n_bytes`` was acknowledged after ``seconds``; on average ``concurrency`` chunks
        (this one included) were on the link meanwhile; the hub spent ``server_seconds`` of it itself."""
        self._success()
        self.bytes_acked_by_link += n_bytes
        busy = seconds - max(0.0, server_seconds)
        if busy <= 0 or n_bytes <= 0:
            return
        now = self.clock()
        self._note_rtt(now, busy, upper_bound_only=True)
        carried = n_bytes * max(1.0, concurrency)
        self._last_lower = _Sample(now, carried / busy, self.rtt_floor or busy)
        self._lower.append(self._last_lower)
        rtt = self.rtt_floor or 0.0
        serialisation = busy - rtt
        if serialisation > 0 and carried / self.threshold_bytes >= PROOF_SECONDS:
            sample = _Sample(now, carried / serialisation, rtt)
            self._capacity.append(sample)
            self._last_capacity = sample
        self._prune(now)

    def record_round_trip(self, seconds: float, *, server_seconds: float = 0.0) -> None:
        self._success()
        rtt = seconds - max(0.0, server_seconds)
        if rtt > 0:
            self._note_rtt(self.clock(), rtt, upper_bound_only=False)
            old = self.smoothed_rtt
            self.smoothed_rtt = rtt if old is None else SMOOTHING * rtt + (1 - SMOOTHING) * old

    def record_failure(self, reason: str) -> None:
        self.failures_in_a_row += 1
        self.last_error = reason

    def _success(self) -> None:
        self.failures_in_a_row = 0
        self.last_success_at = self.clock()

    def _note_rtt(self, now: float, rtt: float, *, upper_bound_only: bool) -> None:
        """A round trip took ``rtt``. A PATCH's time only bounds the RTT from above (it can show that the
        link got shorter, never longer); a HEAD or POST measures it."""
        reference = self._last_capacity.rtt_seconds if self._last_capacity else (
            self._last_lower.rtt_seconds if self._last_lower else None)
        if reference is not None and abs(rtt - reference) > RTT_CHANGE_MIN_SECONDS and (
                rtt * RTT_CHANGE_FACTOR < reference or (not upper_bound_only and rtt > RTT_CHANGE_FACTOR * reference)):
            self._link_changed()
        self._rtts.append((now, rtt))
        if not upper_bound_only:
            self._measured_rtt = rtt
        self._prune(now)

    def _link_changed(self) -> None:
        self._capacity.clear()
        self._lower.clear()
        self._rtts.clear()
        self._measured_rtt = None
        self._last_capacity = None
        self._last_lower = None
        self.changes += 1

    def _prune(self, now: float) -> None:
        for window, samples in ((CAPACITY_WINDOW_SECONDS, self._capacity), (LOWER_BOUND_WINDOW_SECONDS, self._lower)):
            while samples and now - samples[0].at > window:
                samples.popleft()
        while self._rtts and now - self._rtts[0][0] > RTT_WINDOW_SECONDS:
            self._rtts.popleft()

    # -- what the agent and status read ---------------------------------------------------------------

    @property
    def threshold_bytes(self) -> float:
        return self.thin_below_bps / 8

    @property
    def rtt_floor(self) -> float | None:
        """The smallest recent round trip: the link's own delay, without queueing or a busy hub."""
        candidates = [rtt for _, rtt in self._rtts]
        if self._measured_rtt is not None:
            candidates.append(self._measured_rtt)
        return min(candidates) if candidates else None

    @property
    def rtt_seconds(self) -> float | None:
        return self.rtt_floor

    @property
    def capacity_bytes(self) -> float | None:
        """The confident estimate (bytes/s), or None when no transfer has been long enough to tell."""
        return self._largest_recent(self._capacity, self._last_capacity)

    @property
    def lower_bound_bytes(self) -> float | None:
        return self._largest_recent(self._lower, self._last_lower)

    def _largest_recent(self, window: deque[_Sample], last: _Sample | None) -> float | None:
        """The largest sample of the window; with the window empty, the last one stands."""
        self._prune(self.clock())
        if window:
            return max(sample.rate_bytes for sample in window)
        return last.rate_bytes if last else None

    @property
    def rate_bytes(self) -> float | None:
        """Best estimate of what the link carries (bytes/s), for chunk sizes, concurrency and ETAs."""
        estimates = [value for value in (self.capacity_bytes, self.lower_bound_bytes) if value]
        return max(estimates) if estimates else None

    @property
    def state(self) -> LinkState:
        if self.failures_in_a_row > 0:
            return LinkState.DOWN
        return self.measured_state

    @property
    def measured_state(self) -> LinkState:
        """What the link is when it works: what the policy decides by, so that one cut on a thin satellite
        link does not open it to bulk classes. Thin only on a confident estimate."""
        lower, capacity = self.lower_bound_bytes, self.capacity_bytes
        if (lower is not None and lower >= self.threshold_bytes) or (
                capacity is not None and capacity >= self.threshold_bytes):
            return LinkState.GOOD
        if capacity is not None:
            return LinkState.THIN
        rtt = self.rtt_floor
        if lower is not None and rtt is not None and rtt <= FRESH_MAX_RTT_SECONDS:
            # Up, with a short round trip, and nothing long enough has shown it thin: a terrestrial link
            # (port Wi-Fi, 4G, a LAN). A trickle of small writes can never prove more, and "unknown" on a
            # healthy port link only worries the crew. The first backlog measures it for real.
            return LinkState.GOOD
        return LinkState.UNKNOWN

    def probe_bytes(self) -> int:
        """How much a probe of a held-back class must carry to tell thin from good."""
        return int(self.threshold_bytes * PROOF_SECONDS) + 1

    def describe(self) -> dict[str, object]:
        rate, capacity = self.rate_bytes, self.capacity_bytes
        rtt = self.rtt_floor
        return {
            "state": self.state.value,
            "measured_rate": format_rate(rate * 8) if rate else None,
            "measured_rate_bps": round(rate * 8) if rate else None,
            "rate_is_lower_bound": bool(rate) and capacity is None,  # "at least": no transfer was long enough
            "rtt_ms": round(rtt * 1000) if rtt else None,
            "failures_in_a_row": self.failures_in_a_row,
            "last_error": self.last_error or None,
            "last_success_at": self.last_success_at,
        }


@dataclass(frozen=True)
class LinkPolicy:
    thin_max_class: int = DEFAULT_THIN_MAX_CLASS
    metered: bool = False  # set by the crew or the ship's systems: "at sea, every byte costs"

    def __post_init__(self) -> None:
        if not 0 <= self.thin_max_class <= MAX_PRIORITY_CLASS:
            raise ValueError(f"thin-link class must be 0..{MAX_PRIORITY_CLASS}, got {self.thin_max_class}")

    def max_class(self, state: LinkState) -> int:
        """The lowest-urgency class (highest number) that may be sent now. An unknown link is treated as
        good until measured: nothing has shown it thin, and the uploads themselves measure it."""
        if self.metered or state is LinkState.THIN:
            return self.thin_max_class
        return MAX_PRIORITY_CLASS

    def allows(self, priority: int, state: LinkState) -> bool:
        return priority <= self.max_class(state)

    def seals_early(self, priority: int, state: LinkState, class_pending: bool,
                    rtt_seconds: float | None = None) -> bool:
        """Whether a table of ``priority`` should seal its open log at once (within about a second of its
        first row) instead of letting it grow to the seal size or age.

        Fresh data is what a good link is for: seal at once when the link is up and not thin, the class
        may go, and nothing of its class is still waiting (else the rows would only queue behind it, and
        one bigger segment later is cheaper than many small ones now). Class 0 (alarms) is sealed at once
        whatever the link, except that while the link is down one waiting alarm segment collects the
        next ones. While down, thin, metered or busy, logs grow: a ship at sea sends fewer, bigger segments.
        So they do on a long link (``FRESH_MAX_RTT_SECONDS``) that nothing has proven good: a trickle of
        small segments cannot measure a satellite link, and each would cost two round trips of headers."""
        if priority == 0:
            return not (state is LinkState.DOWN and class_pending)
        if class_pending or self.metered or state in (LinkState.DOWN, LinkState.THIN):
            return False
        if state is LinkState.UNKNOWN and rtt_seconds is not None and rtt_seconds > FRESH_MAX_RTT_SECONDS:
            return False  # a long link not proven good: small segments would cost more in requests than data
        return self.allows(priority, state)


class RatePacer:
    """The upload cap: ``take(n)`` returns when ``n`` more bytes may go. ``None`` = no cap."""

    def __init__(self, rate_bps: float | None, clock: Callable[[], float]) -> None:
        self.rate_bps = rate_bps
        self._clock = clock
        self._bucket = TokenBucket(rate_bps / 8 if rate_bps else None, now=clock())

    def set_rate(self, rate_bps: float | None) -> None:
        """A new cap (managed settings), from now on."""
        self.rate_bps = rate_bps
        self._bucket.set_rate(rate_bps / 8 if rate_bps else None, self._clock())

    async def take(self, n: int) -> float:
        """Wait until ``n`` bytes may go; returns the seconds waited (not the link's time)."""
        delay = self._bucket.reserve(n, self._clock())
        if delay > 0:
            await asyncio.sleep(delay)
        return max(0.0, delay)
