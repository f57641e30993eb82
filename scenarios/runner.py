"""Runs a scenario against real processes: one hub (or a hub cluster), one edge per ship, one link proxy per ship.

    scenario file ─▶ plan (seeded) ─▶ Fleet: hub + N × (link proxy ─ edge) as real processes
        hub:     one ``harbour hub run``; with ``[hub] processes = N``, a ``HubCluster``: PostgreSQL, N hubs
                 sharing ledger, staging and warehouse, and HAProxy in front, where the proxies point
        voyage:  link schedule per ship · workload writers · faults at their times · head office publishing
                 datasets ([[publish]], downlink.py) · sampler · progress
        drain:   writers stop, every link goes to the drain profile, wait until every edge is empty, the
                 hub has merged what each edge says it acked, and each ship holds the newest dataset versions
        check:   read every merged table at the hub, compare with what the applications were told
        report:  report.md / report.json / charts

Only public interfaces are used: ``harbour hub run/add-site/add-operator/query/status/publish/datasets``,
``harbour edge run``, the edge's ingest API, ``GET /v1/status`` and ``GET /v1/datasets``, the hub's ``GET /v1/fleet``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from edge_node.client import AsyncEdgeClient, EdgeUnavailable, EdgeWriteError

from . import freshness
from .checker import CheckResult, WriteLog, check
from .downlink import DownlinkLog, edge_listing, publish, served_bytes_problems
from .faults import InjectedFault, run_faults
from .hub_cluster import HubCluster
from .link_driver import ShipLink, follow_voyage
from .link_proxy import LinkProxy
from .plan import LinkChange, Plan, ShipPlan, link_state, make_plan
from .spec import Scenario
from .supervisor import EdgeProcess, HubProcess, Supervisor, harbour
from .workloads import WORKLOADS, first_row_id, rows_due

FLOOD_BATCH_ROWS = 20_000
"""Rows per write while filling a disk on purpose (~1 MiB of telemetry in Arrow)."""

PROGRESS_SECONDS = 5.0
"""One progress line this often: enough to follow a 2-minute demo, few enough for a CI log."""

STATUS_TIMEOUT_SECONDS = 3.0
WRITERS_STOP_SECONDS = 70.0
"""Longer than the edge client's own 60 s timeout, so every write in flight gets an outcome."""
FAULTS_FINISH_SECONDS = 120.0
"""Faults still running when the voyage ends finish their course (the longest is a stall or a disk flood)."""


@dataclass
class Ship:
    plan: ShipPlan
    token: str
    proxy: LinkProxy
    link: ShipLink
    edge: EdgeProcess
    rng: np.random.Generator
    edge_up: asyncio.Event = field(default_factory=asyncio.Event)
    restart_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_id: dict[str, int] = field(default_factory=dict)
    quota_refusals: int = 0
    write_errors: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    last_status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    def profile_at(self, t: float) -> tuple[str, bool]:
        for leg in self.plan.legs:
            if leg.start <= t < leg.end:
                return leg.profile, leg.port
        last = self.plan.legs[-1]
        return last.profile, last.port


@dataclass
class RunResult:
    scenario: Scenario
    plan: Plan
    check: CheckResult
    faults: list[InjectedFault]
    ships: list[Ship]
    log: WriteLog
    timings: dict[str, float]
    drained: bool
    drain_problems: list[str]
    hub_samples: list[dict[str, Any]]
    interventions: list[dict[str, Any]] = field(default_factory=list)
    sales_by_venue: list[dict[str, Any]] = field(default_factory=list)
    freshness: dict[str, dict[str, dict[str, float | int] | None]] = field(default_factory=dict)
    hub_starts: dict[str, int] = field(default_factory=dict)  # per hub process: how often it was started
    downlink: DownlinkLog | None = None  # with [[publish]]: what was published, when each ship held it

    @property
    def passed(self) -> bool:
        return self.check.passed and self.drained


class Fleet:
    """The live run: processes, proxies, writers. Fault executors act on it."""

    def __init__(self, scenario: Scenario, plan: Plan, supervisor: Supervisor, echo: Callable[[str], None]) -> None:
        self.scenario = scenario
        self.plan = plan
        self.supervisor = supervisor
        self.echo = echo
        self.hub: HubProcess | HubCluster = (HubCluster(supervisor, scenario.hub_processes)
                                             if scenario.hub_processes > 1 else supervisor.hub())
        self.hub_up = asyncio.Event()
        self.hub_restart_locks = [asyncio.Lock() for _ in range(scenario.hub_processes)]
        self.operator_token = ""
        self.ships: dict[str, Ship] = {}
        self.log = WriteLog()
        self.faults: list[InjectedFault] = []
        self.hub_samples: list[dict[str, Any]] = []
        self.interventions: list[dict[str, Any]] = []
        self.downlink = DownlinkLog(tuple(ship.name for ship in plan.ships))
        self._bytes_checked = False
        self._t0 = time.monotonic()
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, AsyncEdgeClient] = {}
        self._writing = True

    @property
    def hub_processes(self) -> tuple[HubProcess, ...]:
        return self.hub.processes

    def clock(self) -> float:
        """Real seconds since the voyage started."""
        return time.monotonic() - self._t0

    def sim_ms(self, t: float) -> int:
        start = datetime.fromisoformat(self.scenario.start.replace("Z", "+00:00"))
        return int(start.timestamp() * 1000 + t * self.scenario.scale * 1000)

    # --- start-up -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=STATUS_TIMEOUT_SECONDS))
        await asyncio.to_thread(self.hub.start)
        self.hub_up.set()
        names = [ship.name for ship in self.plan.ships]
        tokens = await asyncio.to_thread(_register, self.hub, names)
        self.operator_token = tokens.pop("")
        options = [f"--{key}={value}" for key, value in self.scenario.edge_options]
        options += [f"--priority={t.name}={t.priority}" for t in self.scenario.tables]
        options.append(f"--seed={self.plan.seed}")  # each edge mixes in its site: a run replays from its seed
        for ship_plan, spec in zip(self.plan.ships, self.scenario.ships, strict=True):
            first = ship_plan.changes[0]
            proxy = await LinkProxy("127.0.0.1", self.hub.port, state=first.state).start()
            link = ShipLink(proxy, self.clock)
            link.set_base(first)
            extra = [*options, *([f"--max-disk={spec.max_disk}"] if spec.max_disk else [])]
            edge = self.supervisor.edge(ship_plan.name, hub_url=proxy.url, token=tokens[ship_plan.name],
                                        extra=tuple(extra))
            self.ships[ship_plan.name] = Ship(
                ship_plan, tokens[ship_plan.name], proxy, link, edge, np.random.default_rng([self.plan.seed,
                                                                                              ship_plan.number]),
                next_id={t.name: first_row_id(ship_plan.number) for t in self.scenario.tables})
        await asyncio.gather(*(asyncio.to_thread(ship.edge.start) for ship in self.ships.values()))
        for ship in self.ships.values():
            ship.edge_up.set()

    async def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        for ship in self.ships.values():
            with contextlib.suppress(Exception):
                await ship.link.proxy.stop()
        if self._session is not None:
            await self._session.close()

    # --- the voyage -------------------------------------------------------------------------------
    async def voyage(self, on_fault: Callable[[str], None]) -> None:
        self._t0 = time.monotonic()
        for ship in self.ships.values():
            ship.link.history.clear()
            ship.link.set_base(ship.plan.changes[0])
        links = [asyncio.create_task(follow_voyage(s.link, s.plan.changes[1:], self.clock))
                 for s in self.ships.values()]
        writers = [asyncio.create_task(self._writer(ship)) for ship in self.ships.values()]
        faults = asyncio.create_task(run_faults(self, self.plan.faults, self.faults,
                                                on_inject=lambda e: on_fault(e.describe())))
        publisher = asyncio.create_task(self._publisher())
        try:
            await asyncio.sleep(self.plan.duration)
            self._writing = False
            done, late = await asyncio.wait(writers, timeout=WRITERS_STOP_SECONDS)
            if late:
                self.echo(f"{len(late)} writer(s) still waiting after {WRITERS_STOP_SECONDS:g} s; their writes in "
                          "flight count as unanswered")
            # faults still running finish their own course (bounded), so a killed process is restarted
            await asyncio.wait([faults, publisher], timeout=FAULTS_FINISH_SECONDS)
        finally:
            for task in (*links, *writers, faults, publisher):
                task.cancel()
            await asyncio.gather(*links, *writers, faults, publisher, return_exceptions=True)

    async def _publisher(self) -> None:
        """Head office: each [[publish]] at its time, with the real ``harbour hub publish`` (see downlink.py)."""
        for event in self.plan.publishes:
            delay = event.at - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self.echo(f"[{self.clock():5.0f}s] head office: {event.describe()}")
            try:
                version, record, at = await asyncio.to_thread(
                    publish, self.hub.options, self.supervisor.workdir / "published", event, self.plan.seed,
                    self.sim_ms(event.at), self.clock)
            except Exception as error:  # noqa: BLE001 -- a publish that failed (or timed out) fails the run, named
                self.downlink.failures.append(f"{event.describe()}: {error}")
                self.echo(f"[{self.clock():5.0f}s] head office: publish FAILED: {error}")
                continue
            published = self.downlink.record_publish(event, version, record, at, self.link_at)
            self.echo(f"[{at:5.0f}s] head office: {event.dataset} version {version} published "
                      f"({published.size / 2**20:.2f} MiB, sha256 {published.sha256[:12]}) for "
                      + ", ".join(f"{ship} ({link})" for ship, link in published.link_at_publish.items()))

    def link_at(self, ship: str, t: float) -> str:
        """What ``ship``'s link was at voyage second ``t``: its profile, or down/stalled/corrupting (+ drain after the
        voyage, when every link is on the drain profile)."""
        history = self.ships[ship].link.history
        record = next((r for r in reversed(history) if r.at <= t), history[0] if history else None)
        label = record.label if record else "?"
        return f"{label} (drain)" if t >= self.plan.duration else label

    async def _writer(self, ship: Ship) -> None:
        interval = self.scenario.write_interval_seconds
        last = self.clock()
        while self._writing:
            await asyncio.sleep(interval)
            if not ship.edge_up.is_set():  # power is off: the applications wait (and buffer) too
                continue
            now = self.clock()
            _, in_port = ship.profile_at(now)
            hour = (self.sim_ms(now) / 3_600_000) % 24
            for table in self.scenario.tables:
                workload = WORKLOADS[table.workload]
                n = rows_due(ship.rng, table.rows_per_second, workload.shape(hour, in_port), now - last)
                if n:
                    await self.write(ship, table.name, n, self.sim_ms(last), self.sim_ms(now) - self.sim_ms(last))
            last = now

    async def write(self, ship: Ship, table: str, n: int, start_ms: int, span_ms: int) -> tuple[str, int]:
        """Write ``n`` new rows; the outcome as the application saw it, and the rows' Arrow size."""
        spec = next(t for t in self.scenario.tables if t.name == table)
        first = ship.next_id[table]
        ship.next_id[table] = first + n
        ids = np.arange(first, first + n, dtype=np.int64)
        data = WORKLOADS[spec.workload].generate(ship.rng, ids, start_ms, max(1, span_ms))
        url = ship.edge.url
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = await AsyncEdgeClient(url).__aenter__()
        try:
            await client.write(table, data)
            outcome = "acked"
        except EdgeWriteError as error:
            outcome = "refused"
            if error.status == 507:
                ship.quota_refusals += 1
            else:
                ship.write_errors.append(f"{table}: {error.status} {str(error)[:200]}")
        except (EdgeUnavailable, asyncio.CancelledError) as error:
            self.log.record(ship.name, table, first, n, "unknown")
            if isinstance(error, asyncio.CancelledError):
                raise
            return "unknown", data.nbytes
        self.log.record(ship.name, table, first, n, outcome, data.nbytes, acked_at=time.time())
        return outcome, data.nbytes

    async def flood_until_full(self, ship: Ship, max_seconds: float) -> int:
        """Write telemetry as fast as the edge takes it until it answers 507; the bytes written."""
        table = next((t.name for t in self.scenario.tables if t.workload == "telemetry"), self.scenario.tables[0].name)
        refusals = ship.quota_refusals
        written = 0
        deadline = time.monotonic() + max_seconds
        while ship.quota_refusals == refusals and time.monotonic() < deadline:
            if not ship.edge_up.is_set():
                await asyncio.sleep(0.2)
                continue
            now = self.sim_ms(self.clock())
            outcome, nbytes = await self.write(ship, table, FLOOD_BATCH_ROWS, now, 1000)
            if outcome == "acked":
                written += nbytes
        return written

    # --- observation -------------------------------------------------------------------------------
    async def edge_status(self, ship: Ship) -> dict[str, Any] | None:
        if not ship.edge_up.is_set() or not ship.edge.url or self._session is None:
            return None
        try:
            async with self._session.get(ship.edge.url + "/v1/status") as response:
                ship.last_status = await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            ship.last_status = None
        return ship.last_status

    async def fleet_status(self) -> dict[str, Any] | None:
        if not self.hub_up.is_set() or self._session is None:
            return None
        try:
            async with self._session.get(self.hub.url + "/v1/fleet",
                                         headers={"Authorization": f"Bearer {self.operator_token}"}) as response:
                return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def sample(self) -> None:
        t = self.clock()
        statuses = await asyncio.gather(*(self.edge_status(s) for s in self.ships.values()))
        for ship, status in zip(self.ships.values(), statuses, strict=True):
            tables = (status or {}).get("tables") or []
            record = ship.link.history[-1] if ship.link.history else None
            ship.samples.append({
                "t": round(t, 2),
                "backlog_bytes": sum(x["pending_bytes"] + x["log_bytes"] for x in tables) if status else None,
                "pending_rows": sum(x["pending_rows"] + x["log_rows"] for x in tables) if status else None,
                "edge_link": (status or {}).get("sync", {}).get("link", {}).get("state"),
                "bytes_up": ship.link.proxy.stats.bytes_up,
                "label": record.label if record else "",
                "profile": ship.link.profile,
                "capacity": record.capacity_bytes_per_second if record else None,
            })
        if self.plan.publishes:
            await self._sample_datasets()
        fleet = await self.fleet_status()
        if fleet is not None:
            merged = sum(info.get("rows_merged", 0) for site in fleet.get("sites", [])
                         for info in (site.get("tables") or {}).values())
            self.hub_samples.append({"t": round(t, 2), "rows_merged": merged})

    async def _sample_datasets(self) -> dict[str, list[dict[str, Any]] | None]:
        """Every edge's ``GET /v1/datasets``: the first time each ship holds each published version."""
        assert self._session is not None
        listings = {}
        for ship in self.ships.values():
            up = ship.edge_up.is_set() and ship.edge.url
            listings[ship.name] = listing = await edge_listing(self._session, ship.edge.url) if up else None
            if listing is not None:
                for name, version, arrival in self.downlink.observe(ship.name, listing, self.clock(), time.time(),
                                                                    self.link_at):
                    self.echo(f"[{arrival.at:5.0f}s] {ship.name} switched to {name} v{version} ({arrival.link})")
        return listings

    async def sampler(self) -> None:
        while True:
            started = time.monotonic()
            await self.sample()
            await asyncio.sleep(max(0.05, self.scenario.sample_seconds - (time.monotonic() - started)))

    def progress_line(self) -> str:
        t = self.clock()
        sim = datetime.fromtimestamp(self.sim_ms(min(t, self.plan.duration)) / 1000, UTC).strftime("%a %H:%M")
        acked = self.log.rows("acked")
        parts = []
        for ship in list(self.ships.values())[:4]:
            last = ship.samples[-1] if ship.samples else {}
            backlog = last.get("backlog_bytes")
            shown = "edge down" if backlog is None else f"{backlog / 2**20:.1f} MiB"
            parts.append(f"{ship.name} {ship.link.history[-1].label if ship.link.history else '?'} {shown}")
        if len(self.ships) > 4:
            down = sum(1 for s in self.ships.values() if s.link.history and s.link.history[-1].label == "down")
            total = sum((s.samples[-1].get("backlog_bytes") or 0) for s in self.ships.values() if s.samples)
            parts.append(f"+{len(self.ships) - 4} more ({down} links down, fleet backlog {total / 2**20:.1f} MiB)")
        merged = self.hub_samples[-1]["rows_merged"] if self.hub_samples else 0
        processes = self.hub_processes
        up = f" ({sum(p.running for p in processes)}/{len(processes)} hubs up)" if len(processes) > 1 else ""
        return (f"[{t:5.0f}s/{self.plan.duration:.0f}s] sim {sim} | rows acked {acked:,}, at hub {merged:,}{up} | "
                f"faults {len(self.faults)}/{len(self.plan.faults)} | " + " · ".join(parts))

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            self.echo(self.progress_line())

    # --- drain and check ------------------------------------------------------------------------
    async def drain(self) -> tuple[bool, list[str]]:
        """Every link to the drain profile; wait until each edge has nothing pending and the hub has
        merged, per ship and table, every row the edge counts as acked."""
        profile = self.scenario.links[self.scenario.drain_profile]
        for ship in self.ships.values():
            ship.link.overlays.clear()
            ship.link.set_base(LinkChange(self.clock(), profile.name, False, link_state(profile)))
        deadline = time.monotonic() + self.scenario.drain_timeout_seconds
        problems: list[str] = []
        while True:
            await self._release_parked()
            problems = await self._undrained()
            if not problems or time.monotonic() > deadline:
                return not problems, problems
            await asyncio.sleep(1.0)

    async def _release_parked(self) -> None:
        """What the ship's operator does when `harbour edge status` shows parked segments: read the
        reason, then `harbour edge release --all`. Every release is an intervention the report lists: a
        fleet that needs them is not syncing on its own."""
        for ship in self.ships.values():
            parked = ((await self.edge_status(ship)) or {}).get("parked") or []
            if not parked:
                continue
            await asyncio.to_thread(harbour, "edge", "release", "--all", "--data", str(ship.edge.data))
            self.interventions.append({"at": round(self.clock(), 1), "ship": ship.name, "parked": parked})
            self.echo(f"operator: released {len(parked)} parked segment(s) on {ship.name}: "
                      + "; ".join(f"{p.get('segment')}: {' '.join(str(p.get('reason')).split())[:90]}"
                                   for p in parked[:3]))

    async def _undrained(self) -> list[str]:
        problems = []
        fleet = await self.fleet_status()
        hub_tables = {site["site"]: site.get("tables") or {} for site in (fleet or {}).get("sites", [])}
        for ship in self.ships.values():
            status = await self.edge_status(ship)
            if status is None:
                problems.append(f"{ship.name}: edge not answering")
                continue
            if status.get("parked"):
                problems.append(f"{ship.name}: parked segments {status['parked']}")
            for table in status.get("tables", []):
                pending = table["pending_rows"] + table["log_rows"]
                merged = hub_tables.get(ship.name, {}).get(table["table"], {}).get("rows_merged", 0)
                if pending or merged != table["acked_rows"]:
                    problems.append(f"{ship.name}/{table['table']}: {pending} rows pending on board, "
                                    f"{table['acked_rows']} acked, {merged} merged at the hub")
        if self.plan.publishes:
            problems += await self._downlink_undrained()
        return problems

    async def _downlink_undrained(self) -> list[str]:
        """The newest version offered to each ship, on board (by version and the hub's sha256 as the edge lists it);
        once all are, once: read back from every edge, hashing to the hub's sha256."""
        problems = self.downlink.problems(await self._sample_datasets())
        if not problems and not self._bytes_checked:
            assert self._session is not None
            problems = await served_bytes_problems(self._session, {s.name: s.edge.url for s in self.ships.values()},
                                                   self.downlink)
            self._bytes_checked = not problems
        return problems

    def hub_rows(self, table: str) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            text = harbour("hub", "query", *self.hub.options, "--format", "csv", f"SELECT _site, row_id FROM {table}")
        except RuntimeError as error:
            if "not found" in str(error).lower() or "does not exist" in str(error).lower():
                return None
            raise
        data = pacsv.read_csv(io.BytesIO(text.encode()), convert_options=pacsv.ConvertOptions(
            column_types={"_site": pa.string(), "row_id": pa.int64()}))
        return (data.column("_site").to_numpy(zero_copy_only=False).astype(object),
                data.column("row_id").to_numpy(zero_copy_only=False))

    def check(self) -> CheckResult:
        tables = [t.name for t in self.scenario.tables]
        rows = {}
        for table in tables:
            found = self.hub_rows(table)
            if found is not None:
                rows[table] = found
        status = json.loads(harbour("hub", "status", *self.hub.options, "--format", "json"))
        return check(self.log, list(self.ships), tables, rows, status)

    def freshness_figures(self) -> dict[str, dict[str, dict[str, float | int] | None]]:
        """Per ship and table, and for the whole fleet (``FLEET``): seconds from the edge's 200 to the row
        being queryable at the hub (see freshness.py)."""
        figures: dict[str, dict[str, dict[str, float | int] | None]] = {}
        for table in self.scenario.tables:
            try:
                text = harbour("hub", "query", *self.hub.options, "--format", "csv",
                               f"SELECT _site, _seq, min(row_id) AS first, max(row_id) AS last FROM {table.name} "
                               "GROUP BY 1, 2")
            except RuntimeError:
                continue
            data = pacsv.read_csv(io.BytesIO(text.encode()), convert_options=pacsv.ConvertOptions(
                column_types={"_site": pa.string(), "_seq": pa.int64(), "first": pa.int64(), "last": pa.int64()}))
            ranges = freshness.segment_ranges(zip(*(data.column(c).to_pylist() for c in data.column_names),
                                                  strict=True))
            merged = freshness.merge_times(self.hub.tables / table.name)
            pooled: list[float] = []
            for ship in self.ships:
                by_seq = {seq: at for (site, seq), at in merged.items() if site == ship}
                delays = freshness.write_delays(self.log.ack_times.get((ship, table.name), []),
                                                ranges.get(ship, []), by_seq)
                figures.setdefault(ship, {})[table.name] = freshness.percentiles(delays)
                pooled += delays
            figures.setdefault(freshness.FLEET, {})[table.name] = freshness.percentiles(pooled)
        return figures

    def sales_by_venue(self) -> list[dict[str, Any]]:
        """The analyst's first question, asked of the fleet's merged data: what sold, where."""
        table = next((t.name for t in self.scenario.tables if t.workload == "point_of_sale"), None)
        if table is None:
            return []
        with contextlib.suppress(RuntimeError, ValueError):
            return json.loads(harbour(
                "hub", "query", *self.hub.options, "--format", "json",
                f"SELECT venue, item, count(DISTINCT _site) AS ships, sum(quantity) AS sold, "
                f"round(sum(quantity * unit_price), 2) AS revenue_eur FROM {table} GROUP BY 1, 2 "
                f"ORDER BY sold ASC LIMIT 5"))
        return []


def _register(hub: HubProcess | HubCluster, names: list[str]) -> dict[str, str]:
    tokens = {name: hub.add_site(name) for name in names}
    tokens[""] = hub.add_operator("scenario")
    return tokens


BeforeCheck = Callable[[Fleet], Awaitable[None]]


async def run_scenario(scenario: Scenario, seed: int, workdir: Path, *, echo: Callable[[str], None] = print,
                       before_check: BeforeCheck | None = None) -> RunResult:
    plan = make_plan(scenario, seed)
    timings: dict[str, float] = {}
    began = time.monotonic()
    echo(f"scenario {scenario.name}: {len(plan.ships)} ships, {scenario.simulated_hours:g} simulated hours in "
         f"{scenario.real_seconds:g} s, {len(plan.faults)} faults, seed {seed} (plan {plan.digest})")
    with Supervisor(workdir) as supervisor:
        fleet = Fleet(scenario, plan, supervisor, echo)
        try:
            await fleet.start()
            timings["start_seconds"] = time.monotonic() - began
            hubs = (f"a hub cluster of {scenario.hub_processes} processes (PostgreSQL ledger, HAProxy in front)"
                    if scenario.hub_processes > 1 else "hub")
            echo(f"started {hubs} and {len(fleet.ships)} edge nodes in {timings['start_seconds']:.1f} s; sailing")
            sampler = asyncio.create_task(fleet.sampler())
            progress = asyncio.create_task(fleet.progress())
            try:
                mark = time.monotonic()
                await fleet.voyage(on_fault=lambda text: echo(f"[{fleet.clock():5.0f}s] fault: {text}"))
                timings["voyage_seconds"] = time.monotonic() - mark
                echo(f"voyage over after {timings['voyage_seconds']:.0f} s; draining every ship on "
                     f"{scenario.drain_profile!r} links")
                mark = time.monotonic()
                drained, problems = await fleet.drain()
                timings["drain_seconds"] = time.monotonic() - mark
            finally:
                for task in (sampler, progress):
                    task.cancel()
                await asyncio.gather(sampler, progress, return_exceptions=True)
            echo(f"drained in {timings['drain_seconds']:.1f} s" if drained else
                 f"NOT drained after {timings['drain_seconds']:.0f} s: " + "; ".join(problems[:5]))
            if before_check is not None:
                await before_check(fleet)
            mark = time.monotonic()
            result = await asyncio.to_thread(fleet.check)
            sales = await asyncio.to_thread(fleet.sales_by_venue)
            fresh = await asyncio.to_thread(fleet.freshness_figures)
            timings["check_seconds"] = time.monotonic() - mark
        finally:
            await fleet.close()
    timings["total_seconds"] = time.monotonic() - began
    return RunResult(scenario, plan, result, sorted(fleet.faults, key=lambda f: f.started_at),
                     list(fleet.ships.values()), fleet.log, timings, drained, problems, fleet.hub_samples,
                     fleet.interventions, sales, fresh, {p.name: p.starts for p in fleet.hub_processes},
                     fleet.downlink if plan.publishes else None)
