"""Goodput through an emulated link: Harbour's sync beside rsync and JSON/HTTP, same rows, same proxy.

At 10 and 100 Mbit/s, each with 0 and 600 ms of added round-trip time (a geostationary satellite link
behind a split-TCP accelerator; see scenarios/link_proxy.py), each method moves the same telemetry rows
through a fresh ``LinkProxy`` to a receiver in another process:

* **harbour** -- the real sync agent (tus, adaptive chunks, several uploads in flight) to a real hub,
  segments as the edge seals them (Parquet zstd), acked on the hub's durable commit;
* **rsync** -- ``rsync -a --partial`` of the same rows as default pyarrow Parquet files (one per segment)
  to ``rsync --daemon``;
* **json_http** -- the same rows as gzip JSON-lines files, POSTed one at a time to an aiohttp server.

Goodput = the method's own payload bytes delivered per second / the link's byte rate (the baseline: the
link itself, enforced by the same proxy). Since the payloads differ in size for the same rows, rows/s
is reported too, with its ratio to Harbour's. Bytes on the wire (both directions, as the proxy forwarded
them) per row come from the same runs.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
from pathlib import Path

from common import (
    BenchResult,
    PeakRss,
    arrow_ipc_size,
    default_parquet,
    json_gzip,
    median,
    runs_for,
    telemetry,
)
from harbour_sync import ROWS_PER_SEGMENT, SITE, drain, manifests, write_segments
from peers import BenchProxy, RsyncDaemon, ServerProcess, post_files, rsync

from scenarios.link_proxy import LinkState
from scenarios.supervisor import Supervisor

NAME = "link"
TITLE = "Goodput through a rate-limited link: Harbour vs rsync vs JSON/HTTP"
LINKS = [(10e6, 0.0), (10e6, 0.6), (100e6, 0.0), (100e6, 0.6)]
SECONDS_OF_DATA = {True: 2.5, False: 15.0}
"""Seconds each run keeps the link busy at its rate: long enough that set-up is small next to it."""
JSON_POOL = {True: 2, False: 4}
"""Distinct gzip JSON files encoded (json.dumps runs at ~50k rows/s here, too slow for 6M rows per run);
the files are reused in turn, so the JSON payload per row is that of real files of the same rows."""
METHODS = ("harbour", "rsync", "json_http")


class Workload:
    """The same rows in the three encodings, for the largest link; smaller links take a prefix."""

    def __init__(self, root: Path, quick: bool) -> None:
        top_rate = max(rate for rate, _ in LINKS)
        probe = telemetry(ROWS_PER_SEGMENT, seed=1, first_id=ROWS_PER_SEGMENT)
        bytes_per_row = len(default_parquet(probe)) / probe.num_rows
        self.seconds = SECONDS_OF_DATA[quick]
        count = math.ceil(top_rate / 8 * self.seconds / bytes_per_row / ROWS_PER_SEGMENT)
        tables = [telemetry(ROWS_PER_SEGMENT, seed=n, first_id=n * ROWS_PER_SEGMENT) for n in range(1, count + 1)]
        self.raw_bytes_per_row = sum(arrow_ipc_size(t) for t in tables[:4]) / sum(t.num_rows for t in tables[:4])
        self.segment_dir = root / "segments"
        self.segments = write_segments(self.segment_dir, tables)
        self.parquet_root = root / "parquet"
        self.parquet_sizes = []
        for number, table in enumerate(tables, 1):
            path = self.parquet_root / "all" / f"{number:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = default_parquet(table)
            path.write_bytes(data)
            self.parquet_sizes.append(len(data))
        self.json_pool = [json_gzip(t) for t in tables[:JSON_POOL[quick]]]

    def count_for(self, rate: float) -> int:
        """Segments (files) that keep a link of ``rate`` busy for ``self.seconds`` with Parquet bytes."""
        mean = sum(self.parquet_sizes) / len(self.parquet_sizes)
        return max(2, min(len(self.segments), math.ceil(rate / 8 * self.seconds / mean)))

    def parquet_dir(self, count: int) -> Path:
        """A directory holding the first ``count`` Parquet files (hard links, built once per count)."""
        target = self.parquet_root / f"first-{count}"
        if not target.exists():
            target.mkdir()
            for number in range(1, count + 1):
                (target / f"{number:06d}.parquet").hardlink_to(self.parquet_root / "all" / f"{number:06d}.parquet")
        return target

    def json_files(self, count: int, run: str) -> list[tuple[str, bytes]]:
        return [(f"{run}-{n:06d}.json.gz", self.json_pool[n % len(self.json_pool)]) for n in range(count)]


async def _through(hub_port: int, rate: float, rtt: float, work) -> tuple[float, int]:
    proxy = await BenchProxy("127.0.0.1", hub_port, state=LinkState(rate_bps=rate, latency_s=rtt / 2)).start()
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await work(proxy)
        return loop.time() - started, proxy.wire_bytes
    finally:
        await proxy.stop()


def one_method(method: str, ctx: dict, rate: float, rtt: float, run: str) -> dict:
    load: Workload = ctx["load"]
    count = load.count_for(rate)
    rows = count * ROWS_PER_SEGMENT
    if method == "harbour":
        queued = manifests(load.segments[:count], table=f"t{run.replace('-', '_')}")
        payload = sum(f.size for f in load.segments[:count])
        hub = ctx["hub"]

        async def work(proxy):
            await drain(proxy.url, ctx["token"], load.segment_dir, queued)
        seconds, wire = asyncio.run(_through(hub.port, rate, rtt, work))
    elif method == "rsync":
        source = load.parquet_dir(count)
        payload = sum(load.parquet_sizes[:count])
        daemon: RsyncDaemon = ctx["rsync"]

        async def work(proxy):
            code = await rsync(source, proxy.port, run)
            if code != 0:
                raise RuntimeError(f"rsync exited {code}")
        seconds, wire = asyncio.run(_through(daemon.port, rate, rtt, work))
        shutil.rmtree(daemon.root / run, ignore_errors=True)
    else:
        files = load.json_files(count, run)
        payload = sum(len(body) for _, body in files)
        server: ServerProcess = ctx["json"]

        async def work(proxy):
            await post_files(proxy.url, files)
        seconds, wire = asyncio.run(_through(server.port, rate, rtt, work))
        for name, _ in files:
            (server.directory / name).unlink(missing_ok=True)
    return {"seconds": seconds, "payload": payload, "wire": wire, "rows": rows,
            "goodput": payload / seconds / (rate / 8), "rows_per_s": rows / seconds}


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs = runs_for(quick)
    print(f"{TITLE} ({runs} run(s) per link and method)", flush=True)
    with tempfile.TemporaryDirectory(prefix="harbour-bench-link-") as tmp, \
            Supervisor(Path(tmp) / "fleet") as fleet, RsyncDaemon(Path(tmp) / "rsyncd") as daemon, \
            ServerProcess("json", Path(tmp) / "json-received") as json_server, PeakRss() as rss:
        hub = fleet.hub().start()
        rss.watch("hub", hub.process.pid).watch("rsync_daemon", daemon.process.pid).watch("json_server",
                                                                                          json_server.pid)
        load = Workload(Path(tmp), quick)
        ctx = {"load": load, "hub": hub, "token": hub.add_site(SITE), "rsync": daemon, "json": json_server}
        wire_per_row: dict[str, list[float]] = {m: [] for m in METHODS}
        for rate, rtt in LINKS:
            samples: dict[str, list[dict]] = {m: [] for m in METHODS}
            for number in range(runs):
                for method in METHODS:  # interleaved, so that a noisy minute hits every method alike
                    tag = f"{int(rate / 1e6)}m{int(rtt * 1000)}-{number}"
                    samples[method].append(one_method(method, ctx, rate, rtt, tag))
            harbour_rows = median(s["rows_per_s"] for s in samples["harbour"])
            for method in METHODS:
                got = samples[method]
                rows_per_s = median(s["rows_per_s"] for s in got)
                for s in got:
                    wire_per_row[method].append(s["wire"] / s["rows"])
                result.add(kind="goodput", link_mbit=rate / 1e6, rtt_ms=round(rtt * 1000), method=method,
                           goodput_fraction=median(s["goodput"] for s in got),
                           seconds=median(s["seconds"] for s in got), rows=got[0]["rows"],
                           payload_mb=got[0]["payload"] / 1e6, rows_per_s=rows_per_s,
                           rows_per_s_vs_harbour=rows_per_s / harbour_rows,
                           samples=[round(s["goodput"], 4) for s in got])
        for method in METHODS:
            result.add(kind="wire", method=method, wire_bytes_per_row=median(wire_per_row[method]),
                       raw_arrow_bytes_per_row=load.raw_bytes_per_row,
                       wire_to_raw_arrow=median(wire_per_row[method]) / load.raw_bytes_per_row)
    result.add(kind="peak_rss", **{f"{name}_mib": value for name, value in rss.mib().items()})
    result.note("goodput_fraction = the method's payload bytes / seconds / link byte rate; 1.0 = the link is full "
                "of payload. Harbour's payload is Parquet zstd segments, rsync's default pyarrow Parquet "
                "(snappy), JSON/HTTP's gzip JSON lines: rows/s compares what reaches the other side.")
    result.note("Time runs from the first connection to the last durable answer (Harbour: hub commit; rsync: "
                "client exit; JSON/HTTP: the last 201 after the server's fsync). Harbour's agent runs in the "
                "bench process (its ingest and sealing are measured by edge_ingest); the hub also merges "
                "into Delta tables during the runs, on the same 2 cores.")
    result.note(f"rsync: {RsyncDaemon.version()}; the proxy models a PEP link: added RTT delays every byte, "
                "TCP window growth is not slowed.")
    return result
