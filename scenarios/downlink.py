"""The downlink in a scenario: head office publishes a price change mid-voyage; when did each ship get it?

* ``price_list(seed, number, rows, valid_from_ms)`` -- the offers head office publishes: every item of every venue
  of the ships' menus (``workloads.MENU``) in ``rows`` SKUs, list and offer price, deterministic for the run's seed
  and the publish's number, so a replayed seed publishes the same bytes.
* ``publish(...)`` -- writes it as Parquet and runs the real ``harbour hub publish DATASET FILE`` with the hub's
  places (a cluster's shared ledger and staging), ``--ships`` when the file lists them, noting when it committed;
  then reads the hub's own ``harbour hub datasets --format json`` for the version's sha256 and size.
* ``DownlinkLog`` -- what was published and, from the sampler's ``GET /v1/datasets`` of each edge, the first time
  each ship held each published version (the edge's ``switched_at``) and the link it was on then; ``problems`` is
  what the drain waits for (a ship without the newest version offered to it, byte-exact by sha256), ``summary``
  the report's rows.

Only public interfaces: the CLI, the edge's ``GET /v1/datasets`` (and ``GET /v1/datasets/{name}`` for the bytes).
The log takes times as arguments (voyage seconds, and wall-clock seconds to place the edge's ``switched_at``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .plan import PublishEvent
from .supervisor import HARBOUR, harbour
from .workloads import MENU

PRICE_LIST_STREAM = 17
"""Mixed into the seed of every price list, so that its draws are not the workloads' (which use [seed, ship])."""

PRICE_CHANGE_RANGE = (-0.25, 0.05)
"""Each SKU's offer price is its list price changed by a uniform draw from this range: mostly discounts."""

BYTES_CHECK_TIMEOUT_SECONDS = 60.0
"""Reading a version back from an edge on loopback: 40 MB at the largest (``spec.MAX_PUBLISH_ROWS``)."""

NOT_RECEIVED = "not received"
SUPERSEDED = "superseded"


def price_list(seed: int, number: int, rows: int, valid_from_ms: int) -> pa.Table:
    """``rows`` SKUs cycling through every (venue, item) of the menus; SKU ``n`` is the ``n // items``-th size or
    variant of its item (list price 10% higher per variant, up to 5)."""
    rng = np.random.default_rng([seed, PRICE_LIST_STREAM, number])
    menu = [(venue, item, category, price) for venue, items in MENU.items() for item, category, price in items]
    index = np.arange(rows) % len(menu)
    variant = (np.arange(rows) // len(menu)) % 5
    list_price = np.round(np.array([m[3] for m in menu])[index] * (1 + 0.1 * variant), 2)
    offer = np.round(list_price * (1 + rng.uniform(*PRICE_CHANGE_RANGE, rows)), 2)
    take = pa.array(index)
    return pa.table({
        "sku": pa.array(np.arange(1, rows + 1), pa.int64()),
        "venue": pa.array([m[0] for m in menu]).take(take),
        "item": pa.array([m[1] for m in menu]).take(take),
        "category": pa.array([m[2] for m in menu]).take(take),
        "variant": pa.array(variant, pa.int64()),
        "list_price_eur": pa.array(list_price),
        "offer_price_eur": pa.array(offer),
        "price_list": pa.array(np.full(rows, number + 1), pa.int64()),
        "valid_from": pa.array(np.full(rows, valid_from_ms * 1000), pa.timestamp("us", tz="UTC")),
    })


@dataclass(frozen=True)
class PublishedVersion:
    event: PublishEvent
    version: int
    sha256: str
    size: int
    rows: int
    at: float  # voyage seconds of the hub's commit (its published_at)
    offered_to: tuple[str, ...]
    link_at_publish: dict[str, str] = field(hash=False)  # per ship offered it: its link when it was published


@dataclass(frozen=True)
class Arrival:
    at: float  # voyage seconds of the edge's switch (its switched_at)
    link: str  # the ship's link then: its profile ("port", "at-sea"), "down", ... ; "+ drain" after the voyage


PUBLISH_TIMEOUT_SECONDS = 120.0
"""A generated price list of at most 2 M rows converts in seconds; a publish still running after this failed."""


def publish(hub_options: tuple[str, ...], directory: Path, event: PublishEvent, seed: int, valid_from_ms: int,
            clock: Callable[[], float]) -> tuple[int, dict[str, Any], float]:
    """Publish the event's price list with the CLI: its version number, the hub's record of that version
    (``harbour hub datasets --format json``: sha256, size, rows) and ``clock()`` at its commit.

    The commit's time is when ``publish`` prints its summary (``published NAME version N ...``, to stderr, right
    after the ledger's commit): the hub's own ``published_at`` is to the second only, and the command's exit comes
    later (a ship in port can hold the version before that)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{event.dataset}-{event.number + 1}.parquet"
    pq.write_table(price_list(seed, event.number, event.rows, valid_from_ms), path)
    ships = ("--ships", ",".join(event.ships)) if event.ships else ()
    command = [*HARBOUR, "hub", "publish", event.dataset, str(path), *hub_options, *ships]
    committed, stderr = None, []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        timer = threading.Timer(PUBLISH_TIMEOUT_SECONDS, process.kill)
        timer.start()
        try:
            assert process.stderr is not None and process.stdout is not None
            for line in process.stderr:
                stderr.append(line)
                if committed is None and line.startswith(f"published {event.dataset} version "):
                    committed = clock()
            out = process.stdout.read()
        finally:
            timer.cancel()
    if process.returncode != 0 or committed is None:
        raise RuntimeError(f"harbour hub publish exited {process.returncode}: {''.join(stderr)[-2000:]}")
    version = int(out.strip().splitlines()[-1])
    listing = json.loads(harbour("hub", "datasets", *hub_options, "--format", "json"))
    dataset = next(d for d in listing["datasets"] if d["name"] == event.dataset)
    return version, next(v for v in dataset["versions"] if v["version"] == version), committed


async def edge_listing(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]] | None:
    """An edge's ``GET /v1/datasets`` (None: it did not answer)."""
    try:
        async with session.get(url + "/v1/datasets") as response:
            return (await response.json())["datasets"] if response.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
        return None


async def served_bytes_problems(session: aiohttp.ClientSession, edges: dict[str, str], log: DownlinkLog) -> list[str]:
    """The byte-exact check: each ship's ``GET /v1/datasets/{name}`` hashes to what the hub published, for the newest
    version offered to it (``edges``: ship -> its edge's URL)."""
    problems = []
    for ship, url in edges.items():
        for name, version in log.newest_for(ship).items():
            try:
                async with session.get(f"{url}/v1/datasets/{name}",
                                       timeout=aiohttp.ClientTimeout(total=BYTES_CHECK_TIMEOUT_SECONDS)) as response:
                    body, header = await response.read(), response.headers.get("Harbour-Dataset-Version")
            except (aiohttp.ClientError, TimeoutError) as error:
                problems.append(f"{ship}: GET /v1/datasets/{name} failed: {error!r}")
                continue
            digest = hashlib.sha256(body).hexdigest()
            if header != str(version.version) or digest != version.sha256:
                problems.append(f"{ship}: serves {name} v{header} with sha256 {digest[:16]}... ({len(body):,} bytes); "
                                f"the hub published v{version.version} as {version.sha256[:16]}... "
                                f"({version.size:,} bytes)")
    return problems


@dataclass
class DownlinkLog:
    ships: tuple[str, ...]
    published: list[PublishedVersion] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # publishes the CLI refused: the run fails
    arrivals: dict[tuple[str, str, int], Arrival] = field(default_factory=dict)  # (ship, dataset, version)
    mismatches: list[str] = field(default_factory=list)  # a ship listing a published version with other bytes

    def record_publish(self, event: PublishEvent, version: int, record: dict[str, Any], at: float,
                       link_at: Callable[[str, float], str]) -> PublishedVersion:
        offered = event.ships or self.ships
        published = PublishedVersion(event, version, record["sha256"], record["size"], record["rows"], at, offered,
                                     {ship: link_at(ship, at) for ship in offered})
        self.published.append(published)
        return published

    def observe(self, ship: str, listing: list[dict[str, Any]], now: float, wall: float,
                link_at: Callable[[str, float], str]) -> list[tuple[str, int, Arrival]]:
        """One ``GET /v1/datasets`` of ``ship`` taken at voyage second ``now`` (wall clock ``wall``): the published
        versions it holds for the first time, placed at the edge's ``switched_at``."""
        new = []
        for held in listing:
            version = self._version(held.get("name"), held.get("version"))
            key = (ship, held.get("name"), held.get("version"))
            if version is None or ship not in version.offered_to or key in self.arrivals:
                continue
            if held.get("sha256") != version.sha256:
                problem = (f"{ship}: lists {version.event.dataset} v{version.version} with sha256 "
                           f"{str(held.get('sha256'))[:16]}..., the hub published {version.sha256[:16]}...")
                if problem not in self.mismatches:
                    self.mismatches.append(problem)
                continue
            switched = held.get("switched_at")
            at = now - (wall - switched) if isinstance(switched, int | float) else now
            at = min(now, max(version.at, at))  # clocks: never before the publish, never after it was seen
            self.arrivals[key] = Arrival(round(at, 2), link_at(ship, at))
            new.append((version.event.dataset, version.version, self.arrivals[key]))
        return new

    def _version(self, dataset: Any, number: Any) -> PublishedVersion | None:
        return next((p for p in self.published if p.event.dataset == dataset and p.version == number), None)

    def newest_for(self, ship: str) -> dict[str, PublishedVersion]:
        """Per dataset, the newest version offered to ``ship``: what it must hold by the end of the drain."""
        newest: dict[str, PublishedVersion] = {}
        for version in self.published:
            current = newest.get(version.event.dataset)
            if ship in version.offered_to and (current is None or version.version > current.version):
                newest[version.event.dataset] = version
        return newest

    def problems(self, listings: dict[str, list[dict[str, Any]] | None]) -> list[str]:
        """What keeps the fleet from being drained on the downlink side, given each ship's ``GET /v1/datasets``
        (None: its edge did not answer)."""
        problems = [f"publish failed: {failure}" for failure in self.failures] + list(self.mismatches)
        for ship in self.ships:
            wanted = self.newest_for(ship)
            if not wanted:
                continue
            listing = listings.get(ship)
            if listing is None:
                problems.append(f"{ship}: edge not answering GET /v1/datasets")
                continue
            held = {d.get("name"): d for d in listing}
            for name, version in wanted.items():
                got = held.get(name) or {}
                if got.get("version") != version.version or got.get("sha256") != version.sha256:
                    problems.append(f"{ship}: holds {name} " + (f"v{got.get('version')}" if got else "no version")
                                    + f", not the newest offered to it, v{version.version} (sha256 "
                                    f"{version.sha256[:16]}...)")
        return problems

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for version in self.published:
            ships = []
            for ship in version.offered_to:
                arrival = self.arrivals.get((ship, version.event.dataset, version.version))
                later = [p.version for p in self.published if p.event.dataset == version.event.dataset
                         and p.version > version.version and (ship, p.event.dataset, p.version) in self.arrivals]
                state = "received" if arrival else (SUPERSEDED if later else NOT_RECEIVED)
                ships.append({"ship": ship, "state": state, "link_at_publish": version.link_at_publish.get(ship),
                              "arrived_after_seconds": round(arrival.at - version.at, 1) if arrival else None,
                              "link_at_arrival": arrival.link if arrival else None,
                              "superseded_by": min(later) if later and not arrival else None})
            rows.append({"dataset": version.event.dataset, "version": version.version,
                         "published_at_hours": version.event.hours, "published_at_seconds": round(version.at, 1),
                         "rows": version.rows, "size": version.size, "sha256": version.sha256,
                         "audience": "every ship" if version.event.ships is None else list(version.event.ships),
                         "ships": ships})
        return rows
