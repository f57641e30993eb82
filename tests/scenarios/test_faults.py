"""``hub-kill`` on stand-in processes: which process, armed with which crash point, and never left dead or armed.

The real processes are killed in ``test_runner.py`` (one hub) and the ``cluster`` scenario (``test_shipped.py``);
here a stand-in hub "dies at its crash point" on a timer, so that every branch is quick and certain.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field

import pytest

from scenarios import faults
from scenarios.faults import inject
from scenarios.plan import FaultEvent


@dataclass
class StandInHub:
    """Started armed, it dies by SIGKILL ``dies_after`` seconds later (None: never reaches its crash point)."""

    name: str
    dies_after: float | None = 0.2
    dies_while_starting: bool = False
    starts: int = 0
    armed: list[str | None] = field(default_factory=list)  # the crash point of each start
    _alive: bool = True
    _dies_at: float | None = None

    @property
    def running(self) -> bool:
        return self._alive and (self._dies_at is None or time.monotonic() < self._dies_at)

    @property
    def returncode(self) -> int | None:
        return None if self.running else -signal.SIGKILL

    def kill(self) -> None:
        self._alive = False

    def start(self, crash_at: str | None = None) -> StandInHub:
        self.starts += 1
        self.armed.append(crash_at)
        self._alive, self._dies_at = True, None
        if crash_at and self.dies_while_starting:
            self._alive = False
            raise RuntimeError(f"{self.name} exited during start-up")
        if crash_at and self.dies_after is not None:
            self._dies_at = time.monotonic() + self.dies_after
        return self


class StandInFleet:
    def __init__(self, *hubs: StandInHub) -> None:
        self.hub_processes = hubs
        self.hub_up = asyncio.Event()
        self.hub_up.set()
        self.hub_restart_locks = [asyncio.Lock() for _ in hubs]
        self.ships: dict = {}

    def clock(self) -> float:
        return time.monotonic()

    def echo(self, line: str) -> None:
        raise AssertionError(line)  # inject() echoes only a fault it could not inject


def hub_kill(hub: int | None = None, crash_at: str | None = None, seconds: float = 0.05) -> FaultEvent:
    return FaultEvent(0.0, "hub-kill", None, seconds, 1.5, 0.05, hub=hub, crash_at=crash_at)


async def test_one_process_of_a_cluster_is_killed_and_started_again_while_the_runner_sees_the_hub_up():
    fleet = StandInFleet(StandInHub("hub1"), StandInHub("hub2"), StandInHub("hub3"))
    done = asyncio.create_task(inject(fleet, hub_kill(hub=1)))
    await asyncio.sleep(0.02)
    assert fleet.hub_up.is_set() and not fleet.hub_processes[1].running  # the others serve meanwhile
    injected = await done
    assert injected.target == "hub2" and "SIGKILL; hub2 back" in injected.outcome
    assert [h.starts for h in fleet.hub_processes] == [0, 1, 0] and fleet.hub_processes[1].running


async def test_a_lone_hub_takes_the_hub_down_while_it_is_dead():
    fleet = StandInFleet(StandInHub("hub"))
    done = asyncio.create_task(inject(fleet, hub_kill()))
    await asyncio.sleep(0.02)
    assert not fleet.hub_up.is_set()
    assert (await done).target == "hub" and fleet.hub_up.is_set()


async def test_an_armed_hub_dies_at_its_crash_point_and_is_started_again_unarmed():
    fleet = StandInFleet(StandInHub("hub1"), StandInHub("hub2"))
    injected = await inject(fleet, hub_kill(hub=0, crash_at="before-delta-commit"))
    hub = fleet.hub_processes[0]
    assert hub.armed == ["before-delta-commit", None] and hub.running
    assert "armed to die at before-delta-commit" in injected.outcome
    assert "died at before-delta-commit" in injected.outcome


async def test_an_armed_hub_that_dies_while_starting_is_started_again_unarmed():
    fleet = StandInFleet(StandInHub("hub1", dies_while_starting=True), StandInHub("hub2"))
    injected = await inject(fleet, hub_kill(hub=0, crash_at="after-delta-commit"))
    hub = fleet.hub_processes[0]
    assert hub.armed == ["after-delta-commit", None] and hub.running, injected.outcome
    assert "died at after-delta-commit" in injected.outcome


async def test_an_armed_hub_that_never_reaches_its_crash_point_is_killed_and_started_unarmed(monkeypatch):
    monkeypatch.setattr(faults, "CRASH_POINT_WAIT_SECONDS", 0.3)
    fleet = StandInFleet(StandInHub("hub1", dies_after=None), StandInHub("hub2"))
    injected = await inject(fleet, hub_kill(hub=0, crash_at="after-chunk-fsync"))
    assert fleet.hub_processes[0].armed == ["after-chunk-fsync", None] and fleet.hub_processes[0].running
    assert "after-chunk-fsync not reached within 0.3 s" in injected.outcome


@pytest.mark.parametrize("cancel_after", [0.02, 0.1])  # while it is down; while it is up, armed
async def test_a_cancelled_hub_kill_leaves_the_process_running_and_unarmed(monkeypatch, cancel_after):
    monkeypatch.setattr(faults, "CRASH_POINT_WAIT_SECONDS", 5.0)
    fleet = StandInFleet(StandInHub("hub1", dies_after=None), StandInHub("hub2"))
    running = asyncio.create_task(inject(fleet, hub_kill(hub=0, crash_at="after-ledger-commit")))
    await asyncio.sleep(cancel_after)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    hub = fleet.hub_processes[0]
    assert hub.running and hub.armed[-1] is None, hub.armed


def test_a_link_cut_waits_for_the_transfer_it_is_told_to():
    status = {"sync": {"in_flight": [{"segment": "aurora/telemetry/4"}], "downloads": [
        {"name": "offers", "fetching": 2, "offset": 262_144, "size": 726_560, "waiting": None},
        {"name": "menus", "fetching": 3, "offset": 0, "size": 9_000, "waiting": None},  # nothing on board yet
        {"name": "crew", "fetching": 1, "offset": 5, "size": 90, "waiting": "class 3 is held back on a thin link"},
        {"name": "ports", "fetching": None, "offset": None, "size": None, "waiting": None}]}}
    offers = "offers v2 (262,144 of 726,560 bytes on board)"
    assert faults.transfers_in_flight(status, "upload") == ["aurora/telemetry/4"]
    assert faults.transfers_in_flight(status, "download") == [offers]
    assert faults.transfers_in_flight(status, "any") == ["aurora/telemetry/4", offers]
    assert faults.transfers_in_flight({}, "any") == []
