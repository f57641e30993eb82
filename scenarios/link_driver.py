"""Drives one ship's ``LinkProxy`` through its voyage, with faults laid over the schedule.

The voyage sets the *base* state (port broadband, satellite at sea, a short outage). A fault pushes an
*overlay* (``up=False`` while flapping, ``stall=True``, ``corrupt_probability``) that wins over the base
until it is popped, so a port call that starts during a corruption window stays corrupt until the fault
ends, and the fault ending restores whatever the voyage says at that moment. Every change of the
effective state is recorded with its time, for the report's shaded timeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .link_proxy import LinkProxy, LinkState
from .plan import LinkChange


@dataclass(frozen=True)
class LinkRecord:
    at: float  # real seconds since the voyage started
    profile: str
    label: str  # what the report shades: the profile, or "down", "stalled", "corrupting"
    capacity_bytes_per_second: float | None  # None: not limited by the proxy


@dataclass
class ShipLink:
    proxy: LinkProxy
    clock: Callable[[], float]  # real seconds since the voyage started
    profile: str = ""
    base: LinkState = field(default_factory=LinkState)
    overlays: dict[str, dict] = field(default_factory=dict)
    history: list[LinkRecord] = field(default_factory=list)

    @property
    def effective(self) -> LinkState:
        state = self.base
        for changes in self.overlays.values():
            state = replace(state, **changes)
        return state

    def set_base(self, change: LinkChange) -> None:
        self.profile, self.base = change.profile, change.state
        self._apply()

    def push(self, name: str, **changes: object) -> None:
        self.overlays[name] = changes
        self._apply()

    def pop(self, name: str) -> None:
        if self.overlays.pop(name, None) is not None:
            self._apply()

    def _apply(self) -> None:
        state = self.effective
        if state != self.proxy.state:
            self.proxy.set_state(state)
        record = LinkRecord(self.clock(), self.profile, label_of(self.profile, state), capacity_of(state))
        if not self.history or (self.history[-1].label, self.history[-1].capacity_bytes_per_second) != (
                record.label, record.capacity_bytes_per_second):
            self.history.append(record)


def label_of(profile: str, state: LinkState) -> str:
    if not state.up:
        return "down"
    if state.stall:
        return "stalled"
    if state.corrupt_probability > 0:
        return "corrupting"
    return profile


def capacity_of(state: LinkState) -> float | None:
    if not state.up or state.stall:
        return 0.0
    return state.rate_bps / 8 if state.rate_bps else None


async def follow_voyage(link: ShipLink, changes: tuple[LinkChange, ...], clock: Callable[[], float]) -> None:
    """Apply each scheduled change at its time; returns after the last one."""
    for change in changes:
        delay = change.at - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        link.set_base(change)
