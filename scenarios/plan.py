"""One run of a scenario, decided in advance: every link change and every fault, in real seconds.

``make_plan(scenario, seed)`` is a pure function (the seed is the only randomness, no clock), so the
same seed always gives the same plan: the same outages at sea, the same faults on the same ships at the
same moments. The runner only executes it. ``Plan.digest`` names a plan in one short string; two runs
with equal digests injected the same faults in the same order.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, replace

from .link_proxy import LinkState
from .spec import FaultSpec, LinkProfile, Scenario


@dataclass(frozen=True)
class LinkChange:
    at: float  # real seconds from the start of the voyage
    profile: str  # the leg's profile ("at-sea")
    outage: bool  # a short outage within the leg ("2% of minutes down")
    state: LinkState


@dataclass(frozen=True)
class Leg:
    start: float  # real seconds
    end: float
    profile: str
    port: bool


@dataclass(frozen=True)
class ShipPlan:
    name: str
    number: int
    legs: tuple[Leg, ...]
    changes: tuple[LinkChange, ...]


@dataclass(frozen=True)
class FaultEvent:
    at: float  # real seconds from the start of the voyage
    kind: str
    ship: str | None  # None for the hub
    seconds: float
    period_seconds: float
    probability: float
    hub: int | None = None  # hub-kill of a cluster: which process (0-based; its name is hub1, hub2, ...)
    crash_at: str | None = None  # hub-kill: the restarted hub SIGKILLs itself at this crash point
    during: str = "upload"  # link-cut: what it waits for (spec.LINK_CUT_DURING)

    @property
    def target(self) -> str:
        """What the fault acts on: a ship, ``hub``, or a process of a hub cluster (``hub2``)."""
        return self.ship or (f"hub{self.hub + 1}" if self.hub is not None else "hub")

    def describe(self) -> str:
        armed = f", armed to die at {self.crash_at}" if self.crash_at else ""
        waits = f" during a {self.during}" if self.during != "upload" else ""
        detail = {"link-cut": waits, "flapping": f" for {self.seconds:g} s (period {self.period_seconds:g} s)",
                  "corruption": f" for {self.seconds:g} s ({self.probability:.0%} of reads)",
                  "stall": f" for {self.seconds:g} s", "edge-kill": f", restart after {self.seconds:g} s",
                  "hub-kill": f", restart after {self.seconds:g} s{armed}",
                  "disk-full": ", link down until writes get 507",
                  }.get(self.kind, "")
        return f"{self.kind} on {self.target}{detail}"


@dataclass(frozen=True)
class PublishEvent:
    at: float  # real seconds from the start of the voyage
    hours: float  # the simulated hour, as the file says
    number: int  # 0, 1, ... in time order: with the seed, what the generated price list holds
    dataset: str
    rows: int
    ships: tuple[str, ...] | None  # None: every ship

    def describe(self) -> str:
        audience = "every ship" if self.ships is None else ", ".join(self.ships)
        return f"publish {self.dataset} ({self.rows:,} rows) for {audience}"


@dataclass(frozen=True)
class Plan:
    scenario: str
    seed: int
    duration: float  # real seconds of voyage (the drain comes after)
    ships: tuple[ShipPlan, ...]
    faults: tuple[FaultEvent, ...]
    publishes: tuple[PublishEvent, ...] = ()

    @property
    def digest(self) -> str:
        plan = asdict(self)
        # what older plans did not have is left out at its default: a scenario without a downlink keeps its digest
        if not plan["publishes"]:
            del plan["publishes"]
        for fault in plan["faults"]:
            if fault["during"] == "upload":
                del fault["during"]
        text = json.dumps(plan, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def link_state(profile: LinkProfile, *, up: bool = True) -> LinkState:
    return LinkState(rate_bps=profile.rate_bps, latency_s=profile.rtt_ms / 2000, up=profile.up and up)


def make_plan(scenario: Scenario, seed: int) -> Plan:
    rng = random.Random(seed)
    ships = tuple(_ship_plan(scenario, number, spec, random.Random(rng.getrandbits(64)))
                  for number, spec in enumerate(scenario.ships))
    fault_rng = random.Random(rng.getrandbits(64))
    faults = [event for spec in scenario.faults for event in _fault_events(scenario, spec, fault_rng)]
    faults.sort(key=lambda f: (f.at, f.kind, f.ship or ""))
    if scenario.hub_processes > 1:
        faults = _spread_over_hubs(faults, scenario.hub_processes, random.Random(rng.getrandbits(64)))
    publishes = tuple(PublishEvent(round(scenario.real_seconds_at(p.at_hours), 3), p.at_hours, number, p.dataset,
                                   p.rows, p.ships) for number, p in enumerate(scenario.publishes))
    return Plan(scenario.name, seed, scenario.real_seconds, ships, tuple(faults), publishes)


def _spread_over_hubs(faults: list[FaultEvent], processes: int, rng: random.Random) -> list[FaultEvent]:
    """Each hub-kill of a cluster, in time order, gets its process: the processes in a seeded order, each once a
    round, never the same one twice in a row, so that the kills of a run hit every process and one that is
    still coming back (or still armed with a crash point) is not the next one chosen."""
    spread: list[FaultEvent] = []
    order: list[int] = []
    previous = None
    for event in faults:
        if event.kind == "hub-kill":
            if not order:
                order = rng.sample(range(processes), processes)
                if order[0] == previous:
                    order.append(order.pop(0))
            previous = order.pop(0)
            event = replace(event, hub=previous)
        spread.append(event)
    return spread


def _voyage_hours(scenario: Scenario, spec, rng: random.Random) -> list[tuple[str, float]]:
    """The itinerary as (profile, hours) legs covering the whole scenario: repeated if it is shorter,
    and started at a seeded random point within ``stagger_hours`` (ships of one line are at different
    ports on the same day)."""
    legs = list(spec.voyage)
    skip = (rng.uniform(0, spec.stagger_hours) if spec.stagger_hours else 0.0) % sum(h for _, h in legs)
    out: list[tuple[str, float]] = []
    remaining, i = scenario.simulated_hours, 0
    while remaining > 1e-9:
        profile, hours = legs[i % len(legs)]
        i += 1
        if skip >= hours:
            skip -= hours
            continue
        take = min(hours - skip, remaining)
        skip = 0.0
        if out and out[-1][0] == profile:
            out[-1] = (profile, out[-1][1] + take)
        else:
            out.append((profile, take))
        remaining -= take
    return out


def _ship_plan(scenario: Scenario, number: int, spec, rng: random.Random) -> ShipPlan:
    legs: list[Leg] = []
    changes: list[LinkChange] = []
    hours = 0.0
    for profile_name, length in _voyage_hours(scenario, spec, rng):
        profile = scenario.links[profile_name]
        start, end = scenario.real_seconds_at(hours), scenario.real_seconds_at(hours + length)
        legs.append(Leg(start, end, profile_name, profile.port))
        changes.append(LinkChange(start, profile_name, False, link_state(profile)))
        if profile.down_fraction > 0 and profile.up:
            slot = profile.outage_minutes / 60
            t = hours
            while t + slot <= hours + length:
                if rng.random() < profile.down_fraction:
                    changes.append(LinkChange(scenario.real_seconds_at(t), profile_name, True,
                                              link_state(profile, up=False)))
                    changes.append(LinkChange(scenario.real_seconds_at(t + slot), profile_name, False,
                                              link_state(profile)))
                t += slot
        hours += length
    return ShipPlan(spec.name, number, tuple(legs), tuple(changes))


def _fault_events(scenario: Scenario, spec: FaultSpec, rng: random.Random) -> list[FaultEvent]:
    names = [ship.name for ship in scenario.ships]
    events = []
    crash_points = list(spec.crash_points)
    rng.shuffle(crash_points)  # draws nothing for an empty list: plans without crash points are unchanged
    for number in range(spec.count):
        hours = spec.at_hours if spec.at_hours is not None else rng.uniform(spec.from_hours, spec.until_hours)
        ship = None if spec.kind == "hub-kill" else (rng.choice(names) if spec.ship == "*" else spec.ship)
        crash_at = crash_points[number % len(crash_points)] if crash_points else None  # each point in turn
        events.append(FaultEvent(round(scenario.real_seconds_at(hours), 3), spec.kind, ship, spec.seconds,
                                 spec.period_seconds, spec.probability, crash_at=crash_at, during=spec.during))
    return events
