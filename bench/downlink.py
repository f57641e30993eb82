"""The downlink: a reference dataset from a real hub to a real edge through an emulated link (issue 17's goals).

Every run is a new ship (``harbour hub add-site``), a version published for it alone (``harbour hub publish NAME FILE
--ships SITE``; random floats, which the hub's zstd cannot shrink, so the wire carries the dataset's size), and a
fresh ``harbour edge run --priority NAME=1`` (class 1 goes on a thin link; the default 3 would wait for port) behind
a ``MeteredProxy``: the scenario link proxy, which also notes when each body byte of a dataset download (a response
with ``Harbour-Dataset-Version``) or of a plain file GET (``X-Bench-File``) left it.

* **goodput** at 512 kbit/s with 600 ms RTT (satellite) and at 50 Mbit/s with 40 ms (port): body bytes / seconds
  from the first to the last body byte at the proxy / the link's byte rate (the first write's bytes are left out:
  they leave at the first instant). Measured **from the first body byte**: the edge's start, its first report
  (every 2 s here, 30 s by default), the answer and the request are not the download. Baseline in the same run: the
  link rate itself, and a plain HTTP GET of the very same file (aiohttp's ``FileResponse``, ``peer_servers.py
  static``) through the same proxy, measured the same way.
* **cuts**: the 50 MB version at 50 Mbit/s, its connection reset 20 times (after each 1/21 of the body that went
  down): bytes on the wire (both directions, at the proxy, from the edge's start to its switch) minus those of the
  same download without cuts, per cut; and the cut run's wire bytes / the version's size.

Goals (issue 17): goodput >= 0.95 of the link; <= 64 KiB extra per cut; <= 1.05x the size after 20 cuts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import pyarrow as pa
import pyarrow.ipc as pa_ipc
from common import BenchResult, median, runs_for
from peer_servers import STATIC_HEADER
from peers import BenchProxy, ServerProcess

from scenarios.link_proxy import LinkState
from scenarios.supervisor import HubProcess, Supervisor, harbour
from sync_protocol.token_bucket import TokenBucket

NAME = "downlink"
TITLE = "Dataset download (downlink) through a rate-limited link: goodput, bytes per cut"
MB = 1_000_000
GOODPUT_LINKS = [(512e3, 0.6), (50e6, 0.04)]
GOODPUT_BYTES = {(512e3, True): 1 * MB, (512e3, False): 2 * MB, (50e6, True): 8 * MB, (50e6, False): 25 * MB}
"""2 MB at 512 kbit/s is 31 s of link per run; 25 MB at 50 Mbit/s is 4 s."""
CUT_LINK = (50e6, 0.04)
CUT_BYTES = {True: 10 * MB, False: 50 * MB}
CUTS = 20
GOAL_GOODPUT = 0.95
GOAL_BYTES_PER_CUT = 64 * 1024
GOAL_WIRE_TO_SIZE = 1.05
REPORT_INTERVAL = "2s"
COLUMNS = 5  # int64 columns of random values over the whole range: 40 bytes a row that zstd cannot shrink
DATASET_MARKER = b"harbour-dataset-version:"
STATIC_MARKER = STATIC_HEADER.lower().encode() + b":"
HEAD_KEEP_BYTES = 8 * 1024
"""Bytes kept between writes while looking for a response's header block (a header block is < 1 KiB)."""


@dataclass
class BodySpan:
    """The body bytes of every metered response on one proxy: how many, when the first and the last left it."""

    free_bytes: int  # the link's bucket is full when the body starts: this many leave at once (its burst)
    first: float | None = None
    last: float = 0.0
    bytes: int = 0
    first_bytes: int = 0  # those of the first write: they leave at ``first``, not over the span
    responses: int = 0

    def add(self, n: int, now: float) -> None:
        if self.first is None:
            self.first, self.first_bytes = now, n
        self.bytes += n
        self.last = now

    @property
    def seconds(self) -> float:
        return self.last - (self.first or self.last)

    @property
    def bytes_per_second(self) -> float:
        """What went over the span at the link's pace: neither the first write nor the bucket's burst (both leave at
        once; 312 KB at 50 Mbit/s would read as 5% above the link over a 1-second download)."""
        paced = self.bytes - max(self.first_bytes, self.free_bytes)
        return paced / self.seconds if self.seconds > 0 else 0.0


class _BodyMeter:
    """The down direction of one connection: finds the responses whose header block carries a marker header,
    reads their ``Content-Length``, and counts their body bytes as the proxy forwards them."""

    def __init__(self, writer, proxy: MeteredProxy) -> None:
        self._writer, self._proxy = writer, proxy
        self.transport = writer.transport
        self._head = b""
        self._remaining = 0

    def write(self, data: bytes) -> None:
        self._writer.write(data)
        self._see(data, self._proxy.now())

    async def drain(self) -> None:
        await self._writer.drain()

    def write_eof(self) -> None:
        self._writer.write_eof()

    def _see(self, data: bytes, now: float) -> None:
        while data:
            if self._remaining:
                n = min(self._remaining, len(data))
                self._remaining -= n
                self._proxy.body_forwarded(n, now)
                data = data[n:]
                continue
            buffer = self._head + data
            lowered = buffer.lower()
            marker = min((at for at in map(lowered.find, (DATASET_MARKER, STATIC_MARKER)) if at >= 0), default=-1)
            end = lowered.find(b"\r\n\r\n", marker) if marker >= 0 else -1
            if end < 0:
                self._head = buffer[-HEAD_KEEP_BYTES:]
                return
            start = lowered.rfind(b"http/1.", 0, marker)
            length = re.search(rb"\r\ncontent-length:\s*(\d+)", lowered[start:end])
            if length is None:
                raise RuntimeError(f"a metered response without Content-Length: {buffer[start:end]!r}")
            self._remaining, self._head = int(length.group(1)), b""
            self._proxy.body.responses += 1
            data = buffer[end + 4:]


class MeteredProxy(BenchProxy):
    """``BenchProxy`` with a ``BodySpan`` of metered responses, and cuts after given counts of body bytes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        rate = self.state.rate_bps / 8 if self.state.rate_bps else None
        self.body = BodySpan(int(TokenBucket(rate, now=0.0).burst))
        self.cut_points: list[int] = []  # body bytes forwarded after which every connection is reset
        self.cuts_made = 0

    def now(self) -> float:
        return self._clock()

    async def _pump(self, reader, writer, direction, connection) -> None:
        await super()._pump(reader, _BodyMeter(writer, self) if direction == "down" else writer, direction,
                            connection)

    def body_forwarded(self, n: int, now: float) -> None:
        self.body.add(n, now)
        if self.cut_points and self.body.bytes >= self.cut_points[0]:
            self.cut_points.pop(0)
            self.cuts_made += 1
            asyncio.get_running_loop().call_soon(self.cut_all)  # after this write: the pump is mid-forward


def dataset_file(path: Path, size: int, seed: int) -> Path:
    """An Arrow IPC stream of ``size`` bytes or so of random 64-bit integers (the hub's zstd leaves them as they are:
    random floats in [0, 1) would shrink by ~20%, their exponents repeat)."""
    rows = max(1, size // (8 * COLUMNS))
    rng = np.random.default_rng(seed)
    info = np.iinfo(np.int64)
    table = pa.table({f"x{i}": pa.array(rng.integers(info.min, info.max, rows, dtype=np.int64))
                      for i in range(COLUMNS)})
    with pa_ipc.new_stream(str(path), table.schema) as writer:
        writer.write_table(table, max_chunksize=64 * 1024)
    return path


@dataclass
class Bench:
    hub: HubProcess
    fleet: Supervisor
    static: ServerProcess
    root: Path
    files: dict[int, Path] = field(default_factory=dict)
    count: itertools.count = field(default_factory=itertools.count)

    def source(self, size: int) -> Path:
        if size not in self.files:
            self.files[size] = dataset_file(self.root / f"source-{size}.arrows", size, seed=size)
        return self.files[size]

    def publish_for_new_ship(self, dataset: str, size: int) -> tuple[str, str, dict]:
        """A new ship, and a version of ``dataset`` published for it alone: (site, token, the hub's record)."""
        site = f"ship-{next(self.count)}"
        token = self.hub.add_site(site)
        version = int(harbour("hub", "publish", dataset, str(self.source(size)), "--data", str(self.hub.data),
                              "--ships", site).strip().splitlines()[-1])
        listing = json.loads(harbour("hub", "datasets", "--data", str(self.hub.data), "--format", "json"))
        entry = next(d for d in listing["datasets"] if d["name"] == dataset)
        record = next(v for v in entry["versions"] if v["version"] == version)
        static = self.static.directory / f"{dataset}-{size}.arrows"  # the very bytes the hub serves, for the GET
        if not static.exists():
            shutil.copyfile(self.hub.data / "datasets" / dataset / f"{version}.arrows", static)
        return site, token, record


async def _held(session: aiohttp.ClientSession, url: str, dataset: str, version: int) -> bool:
    try:
        async with session.get(url + "/v1/datasets") as response:
            listing = (await response.json())["datasets"] if response.status == 200 else []
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
        return False
    return any(d["name"] == dataset and d["version"] == version for d in listing)


async def edge_download(bench: Bench, dataset: str, size: int, rate: float, rtt: float, cuts: int = 0) -> dict:
    """One ship fetching one version through a fresh proxy: body span and wire bytes at the proxy."""
    site, token, record = await asyncio.to_thread(bench.publish_for_new_ship, dataset, size)
    proxy = await MeteredProxy("127.0.0.1", bench.hub.port, state=LinkState(rate_bps=rate, latency_s=rtt / 2)).start()
    proxy.cut_points = [record["size"] * k // (cuts + 1) for k in range(1, cuts + 1)]
    edge = bench.fleet.edge(site, hub_url=proxy.url, token=token,
                            extra=("--priority", f"{dataset}=1", "--report-interval", REPORT_INTERVAL,
                                   "--log-level", "warning"))
    deadline = time.monotonic() + record["size"] / (rate / 8) * 3 + 120
    try:
        await asyncio.to_thread(edge.start)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while not await _held(session, edge.url, dataset, record["version"]):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{site} did not switch to {dataset} v{record['version']} in time: "
                                       f"{edge.log_tail(1500)}")
                await asyncio.sleep(0.1)
        return {"size": record["size"], "wire": proxy.wire_bytes, "wire_down": proxy.stats.bytes_down,
                "body": proxy.body.bytes, "seconds": proxy.body.seconds, "responses": proxy.body.responses,
                "goodput": proxy.body.bytes_per_second / (rate / 8), "cuts": proxy.cuts_made}
    finally:
        await asyncio.to_thread(edge.kill)
        await proxy.stop()
        shutil.rmtree(edge.data, ignore_errors=True)


async def plain_get(bench: Bench, dataset: str, size: int, rate: float, rtt: float) -> dict:
    """The baseline: one HTTP GET of the same bytes from a plain web server, through the same kind of proxy."""
    link = LinkState(rate_bps=rate, latency_s=rtt / 2)
    proxy = await MeteredProxy("127.0.0.1", bench.static.port, state=link).start()
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"{proxy.url}/files/{dataset}-{size}.arrows") as response:
            response.raise_for_status()
            async for _ in response.content.iter_chunked(64 * 1024):
                pass
        return {"seconds": proxy.body.seconds, "body": proxy.body.bytes, "wire": proxy.wire_bytes,
                "goodput": proxy.body.bytes_per_second / (rate / 8)}
    finally:
        await proxy.stop()


def goodput(bench: Bench, result: BenchResult, quick: bool, runs: int) -> None:
    for rate, rtt in GOODPUT_LINKS:
        size = GOODPUT_BYTES[(rate, quick)]
        dataset = f"goodput_{int(rate / 1000)}k"
        edge, plain = [], []
        for _ in range(runs):  # interleaved, so that a noisy minute hits both alike
            edge.append(asyncio.run(edge_download(bench, dataset, size, rate, rtt)))
            plain.append(asyncio.run(plain_get(bench, dataset, size, rate, rtt)))
        harbour_goodput, plain_goodput = median(r["goodput"] for r in edge), median(r["goodput"] for r in plain)
        for method, got, value in (("harbour", edge, harbour_goodput), ("plain_get", plain, plain_goodput)):
            result.add(kind="goodput", link_mbit=rate / 1e6, rtt_ms=round(rtt * 1000), method=method,
                       size_mb=round(got[0]["body" if method == "plain_get" else "size"] / MB, 2),
                       goodput_fraction=value, vs_plain_get=value / plain_goodput,
                       seconds=median(r["seconds"] for r in got), goal=GOAL_GOODPUT,
                       meets_goal=value >= GOAL_GOODPUT if method == "harbour" else "",
                       samples=[round(r["goodput"], 4) for r in got])


def cuts(bench: Bench, result: BenchResult, quick: bool, runs: int) -> None:
    rate, rtt = CUT_LINK
    size = CUT_BYTES[quick]
    clean, cut = [], []
    for _ in range(runs):
        clean.append(asyncio.run(edge_download(bench, "cuts", size, rate, rtt)))
        cut.append(asyncio.run(edge_download(bench, "cuts", size, rate, rtt, cuts=CUTS)))
    extra = [(c["wire"] - median(r["wire"] for r in clean)) / max(1, c["cuts"]) for c in cut]
    ratio = [c["wire"] / c["size"] for c in cut]
    result.add(kind="cuts", link_mbit=rate / 1e6, rtt_ms=round(rtt * 1000), size_mb=round(cut[0]["size"] / MB, 2),
               cuts=cut[0]["cuts"], requests=cut[0]["responses"],
               wire_clean_to_size=median(r["wire"] / r["size"] for r in clean),
               extra_bytes_per_cut=median(extra), goal_bytes_per_cut=GOAL_BYTES_PER_CUT,
               wire_to_size=median(ratio), goal_wire_to_size=GOAL_WIRE_TO_SIZE,
               meets_goals=median(extra) <= GOAL_BYTES_PER_CUT and median(ratio) <= GOAL_WIRE_TO_SIZE,
               samples=[round(e) for e in extra], extra_samples=[round(r, 4) for r in ratio])


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs = runs_for(quick)
    print(f"{TITLE} ({runs} run(s) each)", flush=True)
    with tempfile.TemporaryDirectory(prefix="harbour-bench-downlink-") as tmp, \
            Supervisor(Path(tmp) / "fleet") as fleet, ServerProcess("static", Path(tmp) / "static") as static:
        hub = fleet.hub().start()
        bench = Bench(hub, fleet, static, Path(tmp))
        goodput(bench, result, quick, runs)
        cuts(bench, result, quick, runs)
    result.note("goodput_fraction = body bytes / seconds from the first to the last body byte at the proxy / the "
                "link's byte rate (the first write, or the proxy bucket's burst if larger, left out: they leave at "
                "once). Measured from the first body byte: the edge's "
                f"start, its first report (every {REPORT_INTERVAL} here, 30 s by default) and the request are not "
                "counted.")
    result.note("plain_get: one HTTP GET of the same bytes from aiohttp's FileResponse (sendfile) through the same "
                "proxy; vs_plain_get = harbour / plain_get, what the proxy and the machine allow one TCP stream.")
    result.note(f"cuts: the connection is reset after each 1/{CUTS + 1} of the body went down; extra_bytes_per_cut = "
                "(wire bytes of the cut run - median of the clean runs) / cuts, both directions at the proxy, from the "
                "edge's start to its switch (reports included, which cost the same in both).")
    result.note(f"edges run with --priority DATASET=1 and --report-interval {REPORT_INTERVAL}; the dataset is random "
                f"int64 in record batches of 64 Ki rows (incompressible: the wire carries its size). "
                f"{os.cpu_count()} CPUs shared with the hub, the edge, the proxy and other work.")
    return result
