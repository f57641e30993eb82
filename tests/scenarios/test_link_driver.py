"""Faults are laid over the voyage's link schedule and popping them restores whatever the voyage says now."""

from __future__ import annotations

import asyncio

from scenarios.link_driver import ShipLink, follow_voyage
from scenarios.link_proxy import LinkState
from scenarios.plan import LinkChange


class FakeProxy:
    def __init__(self) -> None:
        self.state = LinkState()
        self.applied: list[LinkState] = []

    def set_state(self, state: LinkState) -> None:
        self.state = state
        self.applied.append(state)


SEA = LinkChange(0, "at-sea", False, LinkState(rate_bps=256_000, latency_s=0.3))
PORT = LinkChange(5, "port", False, LinkState(rate_bps=100e6, latency_s=0.005))


def link() -> tuple[ShipLink, FakeProxy]:
    proxy = FakeProxy()
    return ShipLink(proxy, clock=lambda: 0.0), proxy  # type: ignore[arg-type]


def test_an_overlay_wins_and_popping_it_restores_the_current_base():
    ship, proxy = link()
    ship.set_base(SEA)
    ship.push("corruption", corrupt_probability=0.2)
    assert proxy.state.corrupt_probability == 0.2 and proxy.state.rate_bps == 256_000
    ship.set_base(PORT)  # the port call starts while the corruption lasts
    assert proxy.state.rate_bps == 100e6 and proxy.state.corrupt_probability == 0.2
    ship.pop("corruption")
    assert proxy.state == PORT.state
    assert [(r.label, r.capacity_bytes_per_second) for r in ship.history] == [
        ("at-sea", 32_000), ("corrupting", 32_000), ("corrupting", 12.5e6), ("port", 12.5e6)]


def test_down_beats_everything_and_only_changes_are_applied():
    ship, proxy = link()
    ship.set_base(SEA)
    ship.push("stall", stall=True)
    ship.push("flapping", up=False)
    assert not proxy.state.up and ship.history[-1].label == "down" and ship.history[-1].capacity_bytes_per_second == 0
    applied = len(proxy.applied)
    ship.pop("nothing-there")
    assert len(proxy.applied) == applied
    ship.pop("flapping")
    assert ship.history[-1].label == "stalled"
    ship.pop("stall")
    assert ship.history[-1].capacity_bytes_per_second == 32_000


async def test_the_voyage_is_followed_in_time():
    ship, proxy = link()
    loop = asyncio.get_running_loop()
    start = loop.time()
    clock = lambda: loop.time() - start  # noqa: E731
    soon = LinkChange(0.2, "port", False, PORT.state)
    await follow_voyage(ship, (SEA, soon), clock)
    assert proxy.state == PORT.state and 0.19 <= clock() <= 1.0
