"""The link estimate with a fake clock: small transfers cannot fool it, real thin links read thin, and it
follows a port call and a handover. Times are what the real uploads would see on such a link."""

from __future__ import annotations

import pytest

from edge_node.sync.link import (
    CAPACITY_WINDOW_SECONDS,
    LinkMonitor,
    LinkPolicy,
    LinkState,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def link(rate_bps: float, rtt: float, clock: FakeClock, monitor: LinkMonitor, *, chunk: int, in_flight: int = 1,
         seconds: float = 20.0, server_seconds: float = 0.0) -> None:
    """``in_flight`` uploads send ``chunk``-byte PATCHes back to back over a link of ``rate_bps`` and
    ``rtt`` for ``seconds``: each chunk gets its share of the link and pays one round trip."""
    rate = rate_bps / 8
    duration = rtt + server_seconds + chunk * in_flight / rate
    end = clock.now + seconds
    monitor.record_round_trip(rtt + server_seconds, server_seconds=server_seconds)  # the upload's POST
    while clock.now < end:
        clock.advance(duration)
        for _ in range(in_flight):
            monitor.record_transfer(chunk, duration, concurrency=in_flight, server_seconds=server_seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_tiny_segments_on_a_fast_port_link_read_good(clock):
    monitor = LinkMonitor(clock)
    # 4.6 KiB segments on a 50 Mbit/s, 40 ms link, three at once as the agent keeps them: latency-bound
    link(50e6, 0.040, clock, monitor, chunk=4700, in_flight=3)
    assert monitor.measured_state is LinkState.GOOD
    assert LinkPolicy().max_class(monitor.measured_state) == 9


def test_one_tiny_transfer_at_a_time_never_reads_thin(clock):
    """The bug seen in the fleet voyage: 4.6 KiB in 45 ms "measures" 0.8 Mbit/s, but proves nothing."""
    monitor = LinkMonitor(clock)
    link(50e6, 0.040, clock, monitor, chunk=4700, in_flight=1)
    assert monitor.measured_state is LinkState.GOOD  # a short link that nothing showed thin
    assert LinkPolicy().allows(7, monitor.measured_state)


def test_a_trickle_on_a_satellite_link_proves_nothing(clock):
    monitor = LinkMonitor(clock)
    link(512e3, 0.6, clock, monitor, chunk=3000, in_flight=1)
    assert monitor.measured_state is LinkState.UNKNOWN
    assert not LinkPolicy().seals_early(1, monitor.measured_state, False, monitor.rtt_seconds)


def test_a_real_256_kbit_link_reads_thin(clock):
    monitor = LinkMonitor(clock)
    link(256e3, 0.6, clock, monitor, chunk=64 * 1024)  # chunks sized to ~2 s on this link
    assert monitor.measured_state is LinkState.THIN
    assert monitor.capacity_bytes == pytest.approx(32_000, rel=0.05)
    assert LinkPolicy().max_class(monitor.measured_state) == 1


def test_a_256_kbit_link_shared_by_several_uploads_reads_thin_at_its_whole_rate(clock):
    monitor = LinkMonitor(clock)
    link(256e3, 0.6, clock, monitor, chunk=16 * 1024, in_flight=4)
    assert monitor.measured_state is LinkState.THIN
    assert monitor.capacity_bytes == pytest.approx(32_000, rel=0.05)


def test_a_slow_hub_is_not_a_thin_link(clock):
    monitor = LinkMonitor(clock)
    # 64 KiB on a 50 Mbit/s link, but the hub spends 0.9 s on each chunk (fsync behind a busy disk), and
    # says so in Server-Timing
    link(50e6, 0.040, clock, monitor, chunk=64 * 1024, server_seconds=0.9)
    assert monitor.measured_state is LinkState.GOOD


def test_a_port_call_after_weeks_at_sea_reads_good_at_once(clock):
    monitor = LinkMonitor(clock)
    link(256e3, 0.6, clock, monitor, chunk=64 * 1024, seconds=60)
    assert monitor.measured_state is LinkState.THIN
    clock.advance(21 * 24 * 3600)  # weeks of nothing but the sticky estimate
    assert monitor.measured_state is LinkState.THIN
    # in port: the first telemetry PATCH (tiny, 45 ms) already shows the link is another one
    monitor.record_transfer(3000, 0.045)
    assert monitor.measured_state is not LinkState.THIN
    assert monitor.changes == 1
    link(50e6, 0.040, clock, monitor, chunk=4700, in_flight=3, seconds=2)
    assert monitor.measured_state is LinkState.GOOD


def test_a_probe_on_the_same_round_trip_proves_a_better_link(clock):
    """Another satellite beam with the same delay: only a probe big enough to measure can tell."""
    monitor = LinkMonitor(clock)
    link(256e3, 0.6, clock, monitor, chunk=64 * 1024, seconds=30)
    assert monitor.measured_state is LinkState.THIN
    clock.advance(120)
    probe = monitor.probe_bytes()
    clock.advance(0.6 + probe / (20e6 / 8))
    monitor.record_transfer(probe, 0.6 + probe / (20e6 / 8))
    assert monitor.measured_state is LinkState.GOOD


def test_a_handover_that_halves_the_rate_is_followed_within_the_window(clock):
    monitor = LinkMonitor(clock)
    link(4e6, 0.1, clock, monitor, chunk=1_000_000, seconds=30)
    assert monitor.rate_bytes == pytest.approx(500_000, rel=0.05)
    link(2e6, 0.1, clock, monitor, chunk=500_000, seconds=CAPACITY_WINDOW_SECONDS + 5)
    assert monitor.rate_bytes == pytest.approx(250_000, rel=0.05)
    assert monitor.measured_state is LinkState.GOOD


def test_a_handover_below_the_threshold_turns_the_link_thin(clock):
    monitor = LinkMonitor(clock)
    link(1.6e6, 0.6, clock, monitor, chunk=400_000, seconds=30)
    assert monitor.measured_state is LinkState.GOOD
    link(0.8e6, 0.6, clock, monitor, chunk=200_000, seconds=CAPACITY_WINDOW_SECONDS + 5)
    assert monitor.measured_state is LinkState.THIN


def test_a_cut_marks_the_link_down_but_the_policy_keeps_the_measured_state(clock):
    monitor = LinkMonitor(clock)
    link(256e3, 0.6, clock, monitor, chunk=64 * 1024)
    monitor.record_failure("connection reset")
    assert monitor.state is LinkState.DOWN and monitor.measured_state is LinkState.THIN


def test_concurrency_is_the_time_average_of_chunks_in_flight(clock):
    monitor = LinkMonitor(clock)
    first = monitor.transfer_started()
    clock.advance(1.0)
    second = monitor.transfer_started()
    clock.advance(1.0)
    assert monitor.transfer_ended(second) == pytest.approx(2.0)
    assert monitor.transfer_ended(first) == pytest.approx(1.5)


def test_describe_says_when_the_rate_is_only_a_lower_bound(clock):
    monitor = LinkMonitor(clock)
    link(50e6, 0.040, clock, monitor, chunk=4700, in_flight=1, seconds=1)
    described = monitor.describe()
    assert described["rate_is_lower_bound"] is True and described["rtt_ms"] == 40


@pytest.mark.parametrize(("priority", "state", "pending", "metered", "early"), [
    (0, LinkState.DOWN, False, False, True),  # an alarm is sealed at once, whatever the link
    (0, LinkState.DOWN, True, False, False),  # ...but while down, one waiting alarm segment collects the next
    (0, LinkState.THIN, True, True, True),
    (1, LinkState.GOOD, False, False, True),
    (7, LinkState.UNKNOWN, False, False, True),
    (1, LinkState.GOOD, True, False, False),  # busy with this class: let the log grow
    (1, LinkState.THIN, False, False, False),  # at sea: fewer, bigger segments
    (7, LinkState.DOWN, False, False, False),
    (1, LinkState.GOOD, False, True, False),  # metered: every request costs
])
def test_sealing_follows_the_link(priority, state, pending, metered, early):
    assert LinkPolicy(metered=metered).seals_early(priority, state, pending) is early


def test_a_long_link_not_proven_good_lets_logs_grow():
    policy = LinkPolicy()
    assert not policy.seals_early(1, LinkState.UNKNOWN, False, rtt_seconds=0.6)  # satellite, a trickle
    assert policy.seals_early(1, LinkState.GOOD, False, rtt_seconds=0.6)  # satellite proven fast
    assert policy.seals_early(1, LinkState.UNKNOWN, False, rtt_seconds=0.04)  # port
    assert policy.seals_early(0, LinkState.UNKNOWN, False, rtt_seconds=0.6)  # alarms: always


def test_an_idle_link_keeps_its_state(clock):
    monitor = LinkMonitor(clock)
    link(50e6, 0.040, clock, monitor, chunk=4700, in_flight=3, seconds=2)
    clock.advance(600)  # ten quiet minutes in port
    assert monitor.measured_state is LinkState.GOOD and monitor.rate_bytes


def test_the_eta_waits_for_a_link_that_is_down():
    from edge_node.sync.service import eta_seconds

    assert eta_seconds(0, None, LinkState.DOWN) == 0
    assert eta_seconds(1_000_000, 100_000.0, LinkState.GOOD) == 10
    assert eta_seconds(1_000_000, 100_000.0, LinkState.DOWN) is None  # it said 0 or 10 s while the link was down
    assert eta_seconds(1_000_000, None, LinkState.UNKNOWN) is None
