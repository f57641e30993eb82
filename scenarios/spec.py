"""A scenario file (TOML) as validated, immutable values.

A scenario says *what* happens on a voyage, in simulated time: the fleet, the tables each ship writes and
their priority classes, the workload on each table, the link profiles, each ship's voyage as a list of
``[profile, simulated hours]`` legs, and the faults to inject. ``plan.py`` turns it, with a seed, into the
exact timeline of one run in real seconds. Every mistake in a file is a ``ScenarioError`` that names the
key and says what is accepted, so an operator writing their own voyage can fix it without reading code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.faults import CRASH_POINTS
from sync_protocol.errors import RemoteProtocolError
from sync_protocol.identifiers import SiteId, TableName
from sync_protocol.units import parse_rate, parse_size

from .workloads import WORKLOADS

FAULT_KINDS = ("link-cut", "flapping", "corruption", "stall", "edge-kill", "hub-kill", "disk-full")
"""Every fault the simulator can inject; ``demo`` injects each one at least once."""

DEFAULT_FAULT_SECONDS = {
    "link-cut": 10.0,    # how long to wait for a transfer in flight before cutting anyway
    "flapping": 8.0,     # the link goes up and down for this long
    "corruption": 8.0,   # bytes are damaged for this long
    "stall": 8.0,        # the link is half-open for this long (the edge's watchdog fires after 20 s)
    "edge-kill": 2.0,    # power is off this long before the node restarts
    "hub-kill": 2.0,     # the hub is down this long
    "disk-full": 4.0,    # writes are refused this long after the quota is first reached
}
"""Fault durations are in *real* seconds: they are measured against real timeouts (the edge's stall
watchdog, retry back-off), which simulated time does not compress."""

SCENARIO_DIRECTORY = Path(__file__).parent

MAX_PUBLISH_ROWS = 2_000_000
"""A generated price list of at most this many rows (~40 MB as the hub's stream): a scenario measures when each
ship gets it over emulated links, and its writer, the hub's conversion and the ships' downloads share 2 cores."""

LINK_CUT_DURING = ("upload", "download", "any")
"""What a ``link-cut`` waits for before cutting: an upload in flight (the default), a dataset download, or either."""

MAX_HUB_PROCESSES = 8
"""A cluster on one test machine: each process is a Python interpreter with a merger thread; beyond a handful
they only compete for the same cores."""


class ScenarioError(ValueError):
    """The scenario file is wrong; the message names the key and what would be accepted."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    workload: str
    priority: int
    rows_per_second: float


@dataclass(frozen=True)
class LinkProfile:
    name: str
    rate_bps: float | None  # None: not limited by the proxy (port broadband on loopback)
    rtt_ms: float
    up: bool
    down_fraction: float  # share of simulated time spent in short outages
    outage_minutes: float  # simulated length of one outage
    port: bool  # a port call: the report measures how long the backlog takes to drain

    @property
    def capacity_bytes_per_second(self) -> float | None:
        return self.rate_bps / 8 if self.rate_bps and self.up else (0.0 if not self.up else None)


@dataclass(frozen=True)
class ShipSpec:
    name: str
    voyage: tuple[tuple[str, float], ...]  # (profile, simulated hours)
    max_disk: str | None = None
    stagger_hours: float = 0.0  # the voyage starts at a seeded random point of the itinerary


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    ship: str  # a ship name, or "*" for a seeded random ship per injection
    at_hours: float | None  # None: a seeded random time in [from_hours, until_hours)
    from_hours: float
    until_hours: float
    count: int
    seconds: float
    period_seconds: float = 1.5  # flapping: one up/down cycle
    probability: float = 0.05  # corruption: chance that a forwarded read has one byte flipped
    crash_points: tuple[str, ...] = ()  # hub-kill: restart armed with one of these (hub.faults.CRASH_POINTS)
    during: str = "upload"  # link-cut: what to wait for (LINK_CUT_DURING)


@dataclass(frozen=True)
class PublishSpec:
    """Head office publishes a generated price list as the next version of ``dataset`` (``harbour hub publish``)."""

    dataset: str
    at_hours: float
    rows: int
    ships: tuple[str, ...] | None = None  # None: every ship


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    simulated_hours: float
    real_seconds: float
    drain_timeout_seconds: float
    sample_seconds: float
    start: str  # simulated wall clock of t = 0, ISO 8601 UTC
    write_interval_seconds: float
    drain_profile: str
    edge_options: tuple[tuple[str, str], ...]
    tables: tuple[TableSpec, ...]
    links: dict[str, LinkProfile] = field(hash=False)
    ships: tuple[ShipSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    source: str = ""
    hub_processes: int = 1  # [hub] processes: > 1 runs a cluster (PostgreSQL ledger, HAProxy in front)
    publishes: tuple[PublishSpec, ...] = ()  # [[publish]], in time order

    @property
    def scale(self) -> float:
        """Simulated seconds per real second."""
        return self.simulated_hours * 3600 / self.real_seconds

    def real_seconds_at(self, hours: float) -> float:
        return hours * 3600 / self.scale


def resolve(name_or_path: str) -> Path:
    """``demo`` or ``demo.toml`` names a shipped scenario; anything else is a path."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = SCENARIO_DIRECTORY / (name_or_path if name_or_path.endswith(".toml") else f"{name_or_path}.toml")
    if shipped.exists():
        return shipped
    names = ", ".join(sorted(p.stem for p in SCENARIO_DIRECTORY.glob("*.toml")))
    raise ScenarioError(f"no scenario file {name_or_path!r}; shipped scenarios: {names}")


def load(name_or_path: str | Path) -> Scenario:
    path = resolve(str(name_or_path))
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None
    try:
        return parse(data, source=str(path))
    except ScenarioError as error:
        raise ScenarioError(f"{path}: {error}") from None


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ScenarioError(f"[{where}] needs {key!r}")
        return default
    value = table[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ScenarioError(f"[{where}] {key} must be a number, not {value!r}")
    if not isinstance(value, kind):
        raise ScenarioError(f"[{where}] {key} must be {_kind_name(kind)}, not {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if kind == NUMBER:
        return "a number"
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                        "list": "a list", "dict": "a table"}.get(k.__name__, k.__name__) for k in kinds)


def _unknown_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ScenarioError(f"[{where}] has unknown keys {unknown}; allowed: {sorted(allowed)}")


NUMBER = (int, float)


def parse(data: dict[str, Any], source: str = "") -> Scenario:
    _unknown_keys(data, {"scenario", "hub", "edge", "tables", "links", "ships", "faults", "publish"}, "top level")
    head = _get(data, "scenario", dict, "top level")
    _unknown_keys(head, {"name", "description", "simulated_hours", "real_seconds", "drain_timeout_seconds",
                         "sample_seconds", "start", "write_interval_seconds", "drain_profile"}, "scenario")
    simulated_hours = float(_get(head, "simulated_hours", NUMBER, "scenario"))
    real_seconds = float(_get(head, "real_seconds", NUMBER, "scenario"))
    if simulated_hours <= 0 or real_seconds <= 0:
        raise ScenarioError("[scenario] simulated_hours and real_seconds must be positive")
    links = _parse_links(_get(data, "links", dict, "top level"))
    drain_profile = _get(head, "drain_profile", str, "scenario", "port")
    if drain_profile not in links:
        raise ScenarioError(f"[scenario] drain_profile {drain_profile!r} is not one of the [links]: {sorted(links)}")
    edge = _get(data, "edge", dict, "top level", {})
    edge_options = tuple((key.replace("_", "-"), str(value)) for key, value in edge.items())
    tables = _parse_tables(_get(data, "tables", dict, "top level"))
    ships = _parse_ships(_get(data, "ships", list, "top level"), links)
    horizon = simulated_hours
    faults = tuple(_parse_fault(raw, i, {s.name for s in ships}, horizon)
                   for i, raw in enumerate(_get(data, "faults", list, "top level", [])))
    publishes = tuple(sorted((_parse_publish(raw, i, {s.name for s in ships}, horizon)
                              for i, raw in enumerate(_get(data, "publish", list, "top level", []))),
                             key=lambda p: p.at_hours))
    return Scenario(
        name=_get(head, "name", str, "scenario"), description=_get(head, "description", str, "scenario", ""),
        simulated_hours=simulated_hours, real_seconds=real_seconds,
        drain_timeout_seconds=float(_get(head, "drain_timeout_seconds", NUMBER, "scenario", 60)),
        sample_seconds=float(_get(head, "sample_seconds", NUMBER, "scenario", 1.0)),
        start=_get(head, "start", str, "scenario", "2025-06-01T06:00:00Z"),
        write_interval_seconds=float(_get(head, "write_interval_seconds", NUMBER, "scenario", 0.5)),
        drain_profile=drain_profile, edge_options=edge_options, tables=tables, links=links, ships=ships,
        faults=faults, source=source, hub_processes=_parse_hub(_get(data, "hub", dict, "top level", {})),
        publishes=publishes,
    )


def _parse_hub(hub: dict[str, Any]) -> int:
    _unknown_keys(hub, {"processes"}, "hub")
    processes = _get(hub, "processes", int, "hub", 1)
    if not 1 <= processes <= MAX_HUB_PROCESSES:
        raise ScenarioError(f"[hub] processes must be 1 (one hub) .. {MAX_HUB_PROCESSES} (a cluster behind a "
                            f"balancer), not {processes}")
    return processes


def _parse_links(raw: dict[str, Any]) -> dict[str, LinkProfile]:
    links = {}
    for name, table in raw.items():
        where = f"links.{name}"
        if not isinstance(table, dict):
            raise ScenarioError(f"[{where}] must be a table")
        _unknown_keys(table, {"rate", "rtt_ms", "up", "down_fraction", "outage_minutes", "port"}, where)
        rate = _get(table, "rate", str, where, None)
        try:
            rate_bps = parse_rate(rate) if rate else None
        except ValueError as error:
            raise ScenarioError(f"[{where}] rate: {error}") from None
        down_fraction = float(_get(table, "down_fraction", NUMBER, where, 0.0))
        if not 0 <= down_fraction < 1:
            raise ScenarioError(f"[{where}] down_fraction must be in [0, 1), e.g. 0.02 for 2% of minutes down")
        links[name] = LinkProfile(
            name=name, rate_bps=rate_bps, rtt_ms=float(_get(table, "rtt_ms", NUMBER, where, 0)),
            up=_get(table, "up", bool, where, True), down_fraction=down_fraction,
            outage_minutes=float(_get(table, "outage_minutes", NUMBER, where, 20)),
            port=_get(table, "port", bool, where, name.startswith("port")),
        )
    if not links:
        raise ScenarioError("[links] needs at least one link profile, e.g. [links.port] rate = \"100Mbit\"")
    return links


def _parse_tables(raw: dict[str, Any]) -> tuple[TableSpec, ...]:
    tables = []
    for name, table in raw.items():
        where = f"tables.{name}"
        try:
            TableName(name)
        except RemoteProtocolError as error:
            raise ScenarioError(f"[{where}] {error}") from None
        _unknown_keys(table, {"workload", "priority", "rows_per_second"}, where)
        workload = _get(table, "workload", str, where)
        if workload not in WORKLOADS:
            raise ScenarioError(f"[{where}] workload {workload!r} is not one of {sorted(WORKLOADS)}")
        priority = _get(table, "priority", int, where, 5)
        if not 0 <= priority <= 9:
            raise ScenarioError(f"[{where}] priority must be 0 (first) .. 9 (bulk)")
        tables.append(TableSpec(name, workload, priority, float(_get(table, "rows_per_second", NUMBER, where))))
    if not tables:
        raise ScenarioError("[tables] needs at least one table")
    return tuple(tables)


def _parse_ships(raw: list[Any], links: dict[str, LinkProfile]) -> tuple[ShipSpec, ...]:
    ships: list[ShipSpec] = []
    for i, table in enumerate(raw):
        where = f"ships[{i}]"
        if not isinstance(table, dict):
            raise ScenarioError(f"[[ships]] entry {i} must be a table")
        _unknown_keys(table, {"name", "count", "voyage", "max_disk", "stagger_hours"}, where)
        name = _get(table, "name", str, where)
        voyage = []
        for leg in _get(table, "voyage", list, where):
            if (not isinstance(leg, list) or len(leg) != 2 or leg[0] not in links
                    or not isinstance(leg[1], NUMBER) or leg[1] <= 0):
                raise ScenarioError(f"[{where}] voyage legs are [profile, simulated hours] with a profile from "
                                    f"{sorted(links)} and hours > 0; got {leg!r}")
            voyage.append((leg[0], float(leg[1])))
        max_disk = _get(table, "max_disk", str, where, None)
        if max_disk is not None:
            try:
                parse_size(max_disk)
            except ValueError as error:
                raise ScenarioError(f"[{where}] max_disk: {error}") from None
        count = _get(table, "count", int, where, 1)
        names = [name] if count == 1 else [f"{name}-{n:02d}" for n in range(1, count + 1)]
        for ship in names:
            try:
                SiteId(ship)
            except RemoteProtocolError as error:
                raise ScenarioError(f"[{where}] {error}") from None
            ships.append(ShipSpec(ship, tuple(voyage), max_disk,
                                  float(_get(table, "stagger_hours", NUMBER, where, 0.0))))
    if not ships:
        raise ScenarioError("[[ships]] needs at least one ship")
    if len({s.name for s in ships}) != len(ships):
        raise ScenarioError("[[ships]] names must be unique")
    return tuple(ships)


def _parse_fault(raw: Any, i: int, ships: set[str], horizon: float) -> FaultSpec:
    where = f"faults[{i}]"
    if not isinstance(raw, dict):
        raise ScenarioError(f"[[faults]] entry {i} must be a table")
    _unknown_keys(raw, {"kind", "ship", "at_hours", "from_hours", "until_hours", "count", "seconds",
                        "period_seconds", "probability", "crash_points", "during"}, where)
    kind = _get(raw, "kind", str, where)
    if kind not in FAULT_KINDS:
        raise ScenarioError(f"[{where}] kind {kind!r} is not one of {list(FAULT_KINDS)}")
    ship = _get(raw, "ship", str, where, "*")
    if ship != "*" and ship not in ships:
        raise ScenarioError(f"[{where}] ship {ship!r} is not in [[ships]] (or \"*\" for a random ship)")
    at = _get(raw, "at_hours", NUMBER, where, None)
    low = float(_get(raw, "from_hours", NUMBER, where, 0.0))
    high = float(_get(raw, "until_hours", NUMBER, where, horizon * 0.9))
    if at is not None and not 0 <= at < horizon:
        raise ScenarioError(f"[{where}] at_hours must be within the voyage [0, {horizon:g})")
    if not 0 <= low < high <= horizon:
        raise ScenarioError(f"[{where}] needs 0 <= from_hours < until_hours <= {horizon:g}")
    return FaultSpec(
        kind=kind, ship=ship, at_hours=None if at is None else float(at), from_hours=low, until_hours=high,
        count=_get(raw, "count", int, where, 1),
        seconds=float(_get(raw, "seconds", NUMBER, where, DEFAULT_FAULT_SECONDS[kind])),
        period_seconds=float(_get(raw, "period_seconds", NUMBER, where, 1.5)),
        probability=float(_get(raw, "probability", NUMBER, where, 0.05)),
        crash_points=_parse_crash_points(raw, kind, where), during=_parse_during(raw, kind, where),
    )


def _parse_during(raw: dict[str, Any], kind: str, where: str) -> str:
    during = _get(raw, "during", str, where, "upload")
    if "during" in raw and kind != "link-cut":
        raise ScenarioError(f"[{where}] during is for kind = \"link-cut\" only")
    if during not in LINK_CUT_DURING:
        raise ScenarioError(f"[{where}] during {during!r} is not one of {list(LINK_CUT_DURING)}")
    return during


def _parse_publish(raw: Any, i: int, ships: set[str], horizon: float) -> PublishSpec:
    where = f"publish[{i}]"
    if not isinstance(raw, dict):
        raise ScenarioError(f"[[publish]] entry {i} must be a table, e.g. dataset = \"offers\", at_hours = 30, "
                            "rows = 2000")
    _unknown_keys(raw, {"dataset", "at_hours", "rows", "ships"}, where)
    dataset = _get(raw, "dataset", str, where)
    try:
        TableName(dataset)
    except RemoteProtocolError as error:
        raise ScenarioError(f"[{where}] dataset: {error}") from None
    at = float(_get(raw, "at_hours", NUMBER, where))
    if not 0 <= at < horizon:
        raise ScenarioError(f"[{where}] at_hours must be within the voyage [0, {horizon:g})")
    rows = _get(raw, "rows", int, where)
    if not 1 <= rows <= MAX_PUBLISH_ROWS:
        raise ScenarioError(f"[{where}] rows must be 1 .. {MAX_PUBLISH_ROWS:,}, not {rows}")
    targets = _get(raw, "ships", list, where, None)
    if targets is not None:
        unknown = [ship for ship in targets if ship not in ships]
        if not targets or unknown or len(set(targets)) != len(targets):
            raise ScenarioError(f"[{where}] ships must be distinct names from [[ships]] {sorted(ships)} "
                                f"(leave it out for every ship), not {targets!r}")
    return PublishSpec(dataset, at, rows, None if targets is None else tuple(targets))

def _parse_crash_points(raw: dict[str, Any], kind: str, where: str) -> tuple[str, ...]:
    points = _get(raw, "crash_points", list, where, [])
    if points and kind != "hub-kill":
        raise ScenarioError(f"[{where}] crash_points is for kind = \"hub-kill\" only")
    wrong = [point for point in points if point not in CRASH_POINTS]
    if wrong:
        raise ScenarioError(f"[{where}] crash_points {wrong} are not among the hub's crash points {list(CRASH_POINTS)}")
    return tuple(points)
