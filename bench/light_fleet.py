"""A fleet of light ships: hundreds of ships speaking tus straight to one real hub process, or to a hub cluster.

A light ship is a coroutine, not an edge process: it holds valid segments (the sealer's Parquet, a real
manifest, its own hash chain) and sends one every ``PERIOD_SECONDS`` (random phase), as a ship whose link is
good and whose logs seal about once a second per table would, in ``CHUNKS_PER_SEGMENT`` PATCHes with sha256
checksums over one keep-alive connection per ship. So the hub sees the request mix of a busy fleet
(creation, PATCH, commit, merge) at ``ships / PERIOD_SECONDS`` segments a second, without 200 edge processes
on a 2-core machine.

Measured per fleet size: chunk acknowledgement p50 / p99 (request sent -> answer read), answers by status,
seconds until the fleet API reports every row merged, the hub's peak RSS, and exactly-once (the hub's count
and distinct count of row ids against what was sent). Baseline in the same run: the same chunks, same
ships, same pacing, POSTed to a minimal durable receiver (``peer_servers.py json``: aiohttp, write + fsync,
answer) -- the cost of HTTP and fsync alone, so the ratio is what Harbour's protocol, ledger and merge add.

The largest fleet also sails against a hub cluster (``scenarios.hub_cluster``: PostgreSQL, ``CLUSTER_PROCESSES``
hub processes, HAProxy round robin) in the same run, so one process and the cluster are compared on the same
machine: throughput (segments committed per second of sailing), ack times, answers, exactly-once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq
from common import SEED, BenchResult, PeakRss, harbour_segment, median, runs_for, telemetry
from peers import ServerProcess

from hub.layout import HubLayout, open_database
from hub.registry import SiteRegistry
from scenarios.hub_cluster import HubCluster
from scenarios.supervisor import Supervisor
from sync_protocol import Manifest, SegmentId
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.segment_contents import arrow_schema_fingerprint

NAME = "light_fleet"
TITLE = "Light fleet: hundreds of ships speaking tus to one hub process vs a bare durable receiver"
FLEETS = {True: (50,), False: (200, 1000)}
"""Ships per run: the issue's goals are stated for 200 ships on one process and 1,000 against a cluster."""
SEGMENTS_PER_SHIP = {True: 3, False: 5}
ROWS_PER_SEGMENT = 400
"""~8 KiB segments: what a ship's table seals in about a second when the link is good."""
CHUNKS_PER_SEGMENT = 2
PERIOD_SECONDS = 2.0
"""Each ship sends a segment every this many seconds: 200 ships offer 100 segments/s, 1,000 ships 500/s."""
CLUSTER_PROCESSES = 3
"""Hub processes of the cluster the largest fleet also sails against."""
MERGE_TIMEOUT_SECONDS = 600.0
REQUEST_TIMEOUT_SECONDS = 120.0


@dataclass
class LightShip:
    site: str
    token: str
    segments: list[tuple[Manifest, bytes]]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def build_fleet(ships: int, per_ship: int) -> tuple[list[tuple[str, list[tuple[Manifest, bytes]]]], int]:
    """Every ship's segments (valid chains of distinct row ids); the total row count."""
    fleet, rows = [], 0
    schema_fingerprint = None
    for number in range(ships):
        site, prev, segments = f"light-{number:04d}", GENESIS_DIGEST, []
        for seq in range(1, per_ship + 1):
            first = (number * per_ship + seq) * ROWS_PER_SEGMENT
            data = harbour_segment(telemetry(ROWS_PER_SEGMENT, seed=first, first_id=first), site)
            if schema_fingerprint is None:
                schema_fingerprint = arrow_schema_fingerprint(pq.read_schema(pa.BufferReader(data)))
            digest = hashlib.sha256(data).hexdigest()
            segments.append((Manifest.create(
                SegmentId.of(site, "telemetry", seq), row_count=ROWS_PER_SEGMENT, byte_size=len(data), sha256=digest,
                schema_fingerprint=schema_fingerprint, prev_sha256=prev, priority=1, clock=time.time), data))
            prev, rows = digest, rows + ROWS_PER_SEGMENT
        fleet.append((site, segments))
    return fleet, rows


def register(hub_data: Path, sites: list[str], ledger: str | None = None) -> tuple[dict[str, str], str]:
    """Tokens for every ship and one operator, written straight into the hub's registry (``harbour hub add-site``
    is one process per ship: minutes for a thousand); ``ledger``: a cluster's PostgreSQL."""
    database = open_database(ledger, HubLayout.create(hub_data).database)
    try:
        registry = SiteRegistry(database, time.time)
        tokens = {site: registry.add_site(site) for site in sites}
        return tokens, registry.add_operator("bench")
    finally:
        database.close()


def chunks_of(data: bytes) -> list[tuple[int, bytes]]:
    size = -(-len(data) // CHUNKS_PER_SEGMENT)
    return [(offset, data[offset:offset + size]) for offset in range(0, len(data), size)]


async def timed(tally: Tally, session: aiohttp.ClientSession, method: str, url: str, **options):
    started = time.perf_counter()
    response = await session.request(method, url, **options)
    await response.read()
    tally.latencies.append(time.perf_counter() - started)
    tally.statuses[response.status] += 1
    return response


async def sail_tus(base: str, ship: LightShip, tally: Tally, phase: float) -> None:
    auth = {"Authorization": f"Bearer {ship.token}", "Tus-Resumable": "1.0.0"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=1)) as session:
        await asyncio.sleep(phase)
        for manifest, data in ship.segments:
            started = time.perf_counter()
            created = await session.post(f"{base}/v1/sync/uploads", headers={
                **auth, "Upload-Length": str(len(data)), "Upload-Metadata": manifest.to_upload_metadata()})
            await created.read()
            tally.statuses[created.status] += 1
            if created.status != 201:
                tally.failures.append(f"{manifest.segment} create {created.status}")
                continue
            url = f"{base}/v1/sync/uploads/{manifest.segment.upload_key}"
            for offset, chunk in chunks_of(data):
                checksum = "sha256 " + base64.b64encode(hashlib.sha256(chunk).digest()).decode()
                answer = await timed(tally, session, "PATCH", url, data=chunk, headers={
                    **auth, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset),
                    "Upload-Checksum": checksum})
                if answer.status != 204:
                    tally.failures.append(f"{manifest.segment} patch {answer.status}")
                    break
            await asyncio.sleep(max(0.0, PERIOD_SECONDS - (time.perf_counter() - started)))


async def sail_baseline(base: str, ship: LightShip, tally: Tally, phase: float) -> None:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=1)) as session:
        await asyncio.sleep(phase)
        for manifest, data in ship.segments:
            started = time.perf_counter()
            for offset, chunk in chunks_of(data):
                name = f"{manifest.segment.upload_key}-{offset}"
                answer = await timed(tally, session, "POST", f"{base}/files/{name}", data=chunk)
                if answer.status != 201:
                    tally.failures.append(f"{name} {answer.status}")
            await asyncio.sleep(max(0.0, PERIOD_SECONDS - (time.perf_counter() - started)))


async def sail(sailor, base: str, ships: list[LightShip], seed: int) -> tuple[Tally, float]:
    rng = random.Random(seed)
    tally = Tally()
    started = time.perf_counter()
    await asyncio.gather(*(sailor(base, ship, tally, rng.uniform(0, PERIOD_SECONDS)) for ship in ships))
    return tally, time.perf_counter() - started


async def wait_merged(base: str, operator: str, total_rows: int) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {operator}"}) as session:
        while True:
            async with session.get(f"{base}/v1/fleet") as answer:
                sites = (await answer.json())["sites"]
            merged = sum(t["rows_merged"] for s in sites for t in s["tables"].values())
            if merged >= total_rows:
                return time.perf_counter() - started
            if time.perf_counter() - started > MERGE_TIMEOUT_SECONDS:
                raise RuntimeError(f"only {merged:,} of {total_rows:,} rows merged in {MERGE_TIMEOUT_SECONDS:.0f} s")
            await asyncio.sleep(0.2)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


def run_hub_once(workdir: Path, fleet, total_rows: int, run: int) -> dict:
    tokens, operator = register(workdir / "hub", [site for site, _ in fleet])
    ships = [LightShip(site, tokens[site], segments) for site, segments in fleet]
    with Supervisor(workdir) as supervisor, PeakRss() as rss:
        hub = supervisor.hub(extra=("--log-level", "warning")).start()
        rss.watch("hub", hub.process.pid)
        tally, sailing = asyncio.run(sail(sail_tus, hub.url, ships, SEED + run))
        merge_wait = asyncio.run(wait_merged(hub.url, operator, total_rows)) if not tally.failures else None
        counted = hub.query("SELECT count(*) AS n, count(DISTINCT row_id) AS d FROM telemetry")[0]
        peak = rss.mib()["hub"]
    return {"tally": tally, "sailing_s": sailing, "merge_wait_s": merge_wait, "rows": counted["n"],
            "distinct": counted["d"], "rss_mib": peak}


def run_cluster_once(workdir: Path, fleet, total_rows: int, run: int) -> dict:
    with Supervisor(workdir) as supervisor, PeakRss() as rss:
        cluster = HubCluster(supervisor, CLUSTER_PROCESSES).start()
        assert cluster.places is not None
        tokens, operator = register(workdir / "register", [site for site, _ in fleet], cluster.places.ledger)
        ships = [LightShip(site, tokens[site], segments) for site, segments in fleet]
        for process in cluster.processes:
            rss.watch(process.name, process.process.pid)
        tally, sailing = asyncio.run(sail(sail_tus, cluster.url, ships, SEED + run))
        merge_wait = asyncio.run(wait_merged(cluster.url, operator, total_rows)) if not tally.failures else None
        counted = cluster.query("SELECT count(*) AS n, count(DISTINCT row_id) AS d FROM telemetry")[0]
        peak = max(rss.mib().values())
    return {"tally": tally, "sailing_s": sailing, "merge_wait_s": merge_wait, "rows": counted["n"],
            "distinct": counted["d"], "rss_mib": peak}


def run_baseline_once(workdir: Path, fleet, run: int) -> dict:
    ships = [LightShip(site, "", segments) for site, segments in fleet]
    (workdir / "files").mkdir()
    with ServerProcess("json", workdir / "files") as server, PeakRss() as rss:
        rss.watch("receiver", server.pid)
        tally, sailing = asyncio.run(sail(sail_baseline, f"http://127.0.0.1:{server.port}", ships, SEED + run))
        peak = rss.mib()["receiver"]
    return {"tally": tally, "sailing_s": sailing, "rss_mib": peak}


def add_row(result: BenchResult, ships: int, per_ship: int, processes: int, runs: int, total_rows: int,
            hub_runs: list[dict], base_runs: list[dict], base_p99: float) -> None:
    failures = [f for r in hub_runs for f in r["tally"].failures]
    hub_p99 = median(1000 * percentile(r["tally"].latencies, 0.99) for r in hub_runs)
    statuses = sum((r["tally"].statuses for r in hub_runs), Counter())
    result.add(
        ships=ships, hub_processes=processes, segments_per_ship=per_ship,
        offered_segments_per_s=ships / PERIOD_SECONDS, runs=runs,
        committed_segments_per_s=round(median(ships * per_ship / r["sailing_s"] for r in hub_runs), 1),
        chunk_ack_p50_ms=round(median(1000 * statistics.median(r["tally"].latencies) for r in hub_runs), 1),
        chunk_ack_p99_ms=round(hub_p99, 1),
        baseline_p50_ms=round(median(1000 * statistics.median(r["tally"].latencies) for r in base_runs), 1),
        baseline_p99_ms=round(base_p99, 1), p99_vs_baseline=round(hub_p99 / base_p99, 2),
        merged_after_last_ack_s=(round(median(r["merge_wait_s"] for r in hub_runs), 2)
                                 if all(r["merge_wait_s"] is not None for r in hub_runs) else None),
        hub_peak_rss_mib=median(r["rss_mib"] for r in hub_runs),
        receiver_peak_rss_mib=median(r["rss_mib"] for r in base_runs),
        answers=json.dumps(dict(sorted(statuses.items()))), failures=len(failures),
        exactly_once="yes" if all(r["rows"] == r["distinct"] == total_rows for r in hub_runs) else "NO",
    )
    if failures:
        result.note(f"{ships} ships, {processes} hub processes: {len(failures)} failed requests, e.g. {failures[:3]}")


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs = runs_for(quick)
    per_ship = SEGMENTS_PER_SHIP[quick]
    for ships in FLEETS[quick]:
        fleet, total_rows = build_fleet(ships, per_ship)
        base_runs = []
        for number in range(runs):
            with tempfile.TemporaryDirectory(prefix="harbour-light-base-") as tmp:
                base_runs.append(run_baseline_once(Path(tmp), fleet, number))
        base_p99 = median(1000 * percentile(r["tally"].latencies, 0.99) for r in base_runs)
        setups = [(1, run_hub_once)]
        if ships == max(FLEETS[quick]):
            setups.append((CLUSTER_PROCESSES, run_cluster_once))
        for processes, run_once in setups:
            hub_runs = []
            for number in range(runs):
                with tempfile.TemporaryDirectory(prefix="harbour-light-") as tmp:
                    hub_runs.append(run_once(Path(tmp), fleet, total_rows, number))
            add_row(result, ships, per_ship, processes, runs, total_rows, hub_runs, base_runs, base_p99)
    result.note("Chunk ack = one PATCH of half a segment (~4 KiB), sent -> answer read; the last PATCH of a "
                "segment includes the hub's sha256 check, footer check and ledger commit. Baseline: the same chunks "
                "POSTed to bench/peer_servers.py json (aiohttp, write + fsync) with the same ships and pacing.")
    result.note("Light ships and the hub share the machine's 2 cores: the clients' own CPU is in every figure. "
                f"With {CLUSTER_PROCESSES} hub processes, PostgreSQL and HAProxy share them too; hub peak RSS is "
                "then the largest process's.")
    return result
