"""The faults a scenario injects, each done to the real processes and sockets from outside.

* ``link-cut`` -- waits until the edge reports an upload in flight (``during = "download"``: a dataset download;
  ``"any"``: either), then RSTs every connection: the satellite drops mid-transfer.
* ``flapping`` -- the link goes down and up every ``period_seconds``, for ``seconds``: a marginal link at
  the edge of coverage.
* ``corruption`` -- a forwarded read has one byte flipped with ``probability``, for ``seconds``: a noisy
  link or a broken middlebox.
* ``stall`` -- connections stay open, nothing moves and nobody is told, for ``seconds``: a half-open
  link (NAT timeout, satellite handover).
* ``edge-kill`` -- SIGKILL to the edge's process group, restart after ``seconds``: a power cut on board.
* ``hub-kill`` -- SIGKILL to the hub, restart after ``seconds`` on the same port: the head office's
  server crashes. In a hub cluster, to one of its processes (the plan says which) while the others keep
  serving. With ``crash_points`` the restarted hub is armed to SIGKILL itself at one of them (mid-upload,
  mid-merge: windows a kill from outside rarely hits); when it has, it is started again, unarmed.
* ``disk-full`` -- the ship's link goes down and its applications write until the edge answers 507, then
  ``seconds`` more: weeks offline on a small disk (G7).

Every executor returns a one-line outcome for the report and always restores what it changed (the
overlay is popped, a killed process is started again), also when the run is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .link_driver import ShipLink
from .plan import FaultEvent
from .supervisor import ManagedProcess

DISK_FULL_MAX_FLOOD_SECONDS = 45.0
"""A flood that has not reached the quota by then gives up (the report says so): the scenario's
max_disk is too large for the run."""


class ShipUnderTest(Protocol):
    """What a fault does to one ship (``runner.Ship`` has it): its link, its edge process, its power."""

    link: ShipLink
    edge: ManagedProcess
    edge_up: asyncio.Event
    restart_lock: asyncio.Lock
    quota_refusals: int


class HubUnderTest(Protocol):
    """A hub process (``supervisor.HubProcess``): killed, started again, perhaps armed with a crash point."""

    name: str
    starts: int

    @property
    def running(self) -> bool: ...
    @property
    def returncode(self) -> int | None: ...
    def kill(self) -> None: ...
    def start(self, crash_at: str | None = None) -> object: ...


class Fleet(Protocol):
    """What the executors act on and read (``runner.Fleet`` has it, and passes itself to ``run_faults``):
    a Protocol here rather than an import of the runner, so that faults stay below the runner."""

    hub_up: asyncio.Event  # the hub answers (a cluster's balancer does while any process is up)
    hub_restart_locks: Sequence[asyncio.Lock]  # one per hub process

    @property
    def hub_processes(self) -> Sequence[HubUnderTest]: ...

    @property
    def ships(self) -> Mapping[str, ShipUnderTest]: ...
    def clock(self) -> float: ...
    echo: Callable[[str], None]
    async def edge_status(self, ship: Any) -> dict[str, Any] | None: ...
    async def flood_until_full(self, ship: Any, max_seconds: float) -> int: ...


@dataclass
class InjectedFault:
    planned_at: float
    started_at: float
    ended_at: float
    kind: str
    target: str
    outcome: str


async def inject(fleet: Fleet, event: FaultEvent) -> InjectedFault:
    started = fleet.clock()
    executor = EXECUTORS[event.kind]
    try:
        outcome = await executor(fleet, event)
    except Exception as error:  # noqa: BLE001 -- a fault that could not be done is reported, not fatal
        outcome = f"FAILED to inject: {type(error).__name__}: {str(error)[:300]}"
        fleet.echo(f"[{fleet.clock():5.0f}s] {event.describe()}: {outcome}")
    return InjectedFault(event.at, started, fleet.clock(), event.kind, event.target, outcome)


async def link_cut(fleet: Fleet, event: FaultEvent) -> str:
    ship = fleet.ships[event.ship]
    deadline = time.monotonic() + event.seconds
    busy: list[str] = []
    while time.monotonic() < deadline:
        busy = transfers_in_flight((await fleet.edge_status(ship)) or {}, event.during)
        if busy and ship.link.proxy.open_connections:  # a transfer, and bytes on their way
            break
        await asyncio.sleep(0.1)
    cut = ship.link.proxy.cut_all()
    if busy:
        return f"cut {cut} connection(s) mid-transfer of {', '.join(busy[:3])}"
    what = {"upload": "upload", "download": "download", "any": "transfer"}[event.during]
    return f"cut {cut} connection(s); no {what} was in flight within {event.seconds:g} s"


def transfers_in_flight(status: dict[str, Any], during: str) -> list[str]:
    """What the edge's ``GET /v1/status`` shows moving: segments being uploaded (``sync.in_flight``), and dataset
    versions being fetched with part of them on board (``sync.downloads`` with a version to fetch, no reason to wait,
    and a durable offset past 0: the edge fsyncs every 256 KiB, so a smaller version is never seen mid-way and the
    cut comes at the end of the wait), as the cut's outcome names them."""
    sync = status.get("sync") or {}
    uploads = [str(item.get("segment", item)) if isinstance(item, dict) else str(item)
               for item in sync.get("in_flight") or []]
    downloads = [f"{d['name']} v{d['fetching']} ({d['offset']:,} of {d['size']:,} bytes on board)"
                 for d in sync.get("downloads") or []
                 if d.get("fetching") and not d.get("waiting") and 0 < (d.get("offset") or 0) < (d.get("size") or 0)]
    return {"upload": uploads, "download": downloads, "any": uploads + downloads}[during]


async def flapping(fleet: Fleet, event: FaultEvent) -> str:
    ship = fleet.ships[event.ship]
    flaps = 0
    cuts_before = ship.link.proxy.stats.cuts
    end = time.monotonic() + event.seconds
    try:
        while time.monotonic() < end:
            ship.link.push("flapping", up=False)
            flaps += 1
            await asyncio.sleep(event.period_seconds * 0.4)
            ship.link.pop("flapping")
            await asyncio.sleep(event.period_seconds * 0.6)
    finally:
        ship.link.pop("flapping")
    return f"{flaps} drops in {event.seconds:g} s, {ship.link.proxy.stats.cuts - cuts_before} connection(s) cut"


async def _overlay_for(link, name: str, seconds: float, **changes: object) -> None:
    try:
        link.push(name, **changes)
        await asyncio.sleep(seconds)
    finally:
        link.pop(name)


async def corruption(fleet: Fleet, event: FaultEvent) -> str:
    ship = fleet.ships[event.ship]
    before = ship.link.proxy.stats.corrupted
    await _overlay_for(ship.link, "corruption", event.seconds, corrupt_probability=event.probability)
    return f"{ship.link.proxy.stats.corrupted - before} read(s) corrupted in {event.seconds:g} s"


async def stall(fleet: Fleet, event: FaultEvent) -> str:
    ship = fleet.ships[event.ship]
    status = await fleet.edge_status(ship)
    busy = len((status or {}).get("sync", {}).get("in_flight") or [])
    await _overlay_for(ship.link, "stall", event.seconds, stall=True)
    return f"half-open for {event.seconds:g} s with {busy} upload(s) in flight"


async def edge_kill(fleet: Fleet, event: FaultEvent) -> str:
    ship = fleet.ships[event.ship]
    async with ship.restart_lock:
        return await _kill_and_restart(ship.edge_up, ship.edge, event.seconds, f"edge {ship.name}")


async def hub_kill(fleet: Fleet, event: FaultEvent) -> str:
    number = event.hub or 0
    process = fleet.hub_processes[number]
    # A lone hub takes the runner's view of the hub down with it; a cluster's other processes serve meanwhile.
    up = fleet.hub_up if len(fleet.hub_processes) == 1 else asyncio.Event()
    async with fleet.hub_restart_locks[number]:
        outcome = await _kill_and_restart(up, process, event.seconds, process.name, crash_at=event.crash_at)
        if event.crash_at:
            outcome += "; " + await _until_crash_point(up, process, event.crash_at)
        return outcome


START_ATTEMPTS = 3
"""A restart that fails (e.g. the port the hub must reuse is briefly taken) is tried again before the
fault is reported as failed; a process left dead would stall the rest of the run."""

CRASH_POINT_WAIT_SECONDS = 30.0
"""How long a hub armed with a crash point may take to reach it: the first upload or merge it serves passes it,
seconds in a busy run. One that has not by then is SIGKILLed and started unarmed, so that no armed process is
left to die during the drain with nobody to start it again."""


async def _kill_and_restart(up: asyncio.Event, process, down_seconds: float, name: str,
                            crash_at: str | None = None) -> str:
    """SIGKILL, wait, start again. Callers hold the process's restart lock: two power cuts in a row must
    not kill the process the first one is still starting."""
    up.clear()
    try:
        await asyncio.to_thread(process.kill)
        await asyncio.sleep(down_seconds)
    except BaseException:
        crash_at = None  # cancelled: back as it was, unarmed (nobody would wait for its crash point)
        raise
    finally:
        started = time.monotonic()
        await _start(up, process, crash_at)
    armed = f", armed to die at {crash_at}" if crash_at else ""
    return (f"SIGKILL; {name} back {down_seconds + time.monotonic() - started:.1f} s later (start "
            f"#{process.starts}{armed})")


async def _start(up: asyncio.Event, process, crash_at: str | None = None) -> None:
    start = functools.partial(process.start, crash_at=crash_at) if crash_at else process.start
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            await asyncio.to_thread(start)
            break
        except RuntimeError:
            if crash_at and not process.running:
                return  # it reached its crash point already while starting (a merge it took over)
            await asyncio.to_thread(process.kill)
            if attempt == START_ATTEMPTS:
                raise
    up.set()


async def _until_crash_point(up: asyncio.Event, process: HubUnderTest, crash_at: str) -> str:
    """Wait until an armed hub has killed itself at ``crash_at``, then start it again, unarmed (also when the
    run is cancelled meanwhile: a process is never left armed or dead)."""
    began = time.monotonic()
    try:
        while process.running and time.monotonic() - began < CRASH_POINT_WAIT_SECONDS:
            await asyncio.sleep(0.1)
    finally:
        waited = time.monotonic() - began
        died, code = not process.running, process.returncode
        up.clear()
        await asyncio.to_thread(process.kill)
        await _start(up, process)
    if died and code == -signal.SIGKILL:
        return f"died at {crash_at} {waited:.1f} s later; started again (start #{process.starts})"
    if died:
        return f"DIED with exit code {code} (not at {crash_at}) {waited:.1f} s later; started again"
    return (f"{crash_at} not reached within {CRASH_POINT_WAIT_SECONDS:g} s: SIGKILL, started again unarmed "
            f"(start #{process.starts})")


async def disk_full(fleet: Fleet, event: FaultEvent) -> str:
    ship = fleet.ships[event.ship]
    refused_before = ship.quota_refusals
    ship.link.push("disk-full", up=False)
    try:
        flooded = await fleet.flood_until_full(ship, DISK_FULL_MAX_FLOOD_SECONDS)
        reached = ship.quota_refusals > refused_before
        await asyncio.sleep(event.seconds)
    finally:
        ship.link.pop("disk-full")
    refused = ship.quota_refusals - refused_before
    if not reached:
        return f"quota NOT reached after flooding {flooded / 2**20:.1f} MiB for {DISK_FULL_MAX_FLOOD_SECONDS:g} s"
    return f"quota reached after {flooded / 2**20:.1f} MiB offline; {refused} write(s) refused with 507"


EXECUTORS: dict[str, Callable[[Fleet, FaultEvent], Awaitable[str]]] = {
    "link-cut": link_cut, "flapping": flapping, "corruption": corruption, "stall": stall,
    "edge-kill": edge_kill, "hub-kill": hub_kill, "disk-full": disk_full,
}


async def run_faults(fleet: Fleet, events: tuple[FaultEvent, ...], injected: list[InjectedFault],
                     on_inject: Callable[[FaultEvent], None] = lambda _: None) -> None:
    """Start each fault at its planned time (several may overlap); wait for all to finish."""
    running: list[asyncio.Task] = []

    async def one(event: FaultEvent) -> None:
        injected.append(await inject(fleet, event))

    try:
        for event in events:
            delay = event.at - fleet.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            on_inject(event)
            running.append(asyncio.create_task(one(event)))
        await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*running, return_exceptions=True)
