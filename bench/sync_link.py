"""Sync goodput through an emulated link: how much of the link's rate carries segment bytes.

The edge's sync agent (the real one: tus uploads, chunk sizing, several uploads in flight) sends
Parquet segments to a real hub process through the link proxy at 10 and 100 Mbit/s, with 0 and 600 ms
of added round-trip time (a geostationary satellite link). Goodput = segment bytes committed per
second / the link's configured byte rate: the baseline is the link itself, measured in the same run
by the same proxy. Also reported: bytes on the wire per row against the raw Arrow IPC size, and the
bytes one clean cut costs.

    python bench/sync_link.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BenchResult, arrow_ipc_size, telemetry  # noqa: E402

from edge_node.sync.agent import SyncAgent  # noqa: E402
from edge_node.sync.link import LinkMonitor, LinkPolicy  # noqa: E402
from edge_node.sync.memory_queue import MemorySegmentQueue  # noqa: E402
from edge_node.sync.transport import AiohttpHubTransport  # noqa: E402
from scenarios.link_proxy import LinkProxy, LinkState  # noqa: E402
from scenarios.supervisor import Supervisor  # noqa: E402
from sync_protocol import Manifest, SegmentId  # noqa: E402
from sync_protocol.limits import GENESIS_DIGEST  # noqa: E402
from sync_protocol.manifest import schema_fingerprint  # noqa: E402

LINKS = [(10e6, 0.0), (10e6, 0.6), (100e6, 0.0), (100e6, 0.6)]
SECONDS_OF_DATA = {True: 6.0, False: 15.0}
"""How long each run keeps the link busy: long enough that connection set-up and the last round trip
are small next to it (goodput measures the steady state, as a long drain at a port call would)."""


def make_segments(directory: Path, site: str, total_bytes: int, rows_per_segment: int) -> tuple[list, int, int]:
    """Parquet (zstd) telemetry segments totalling about ``total_bytes``; also returns rows and raw Arrow bytes."""
    segments, prev, seq, size, rows, raw = [], GENESIS_DIGEST, 0, 0, 0, 0
    while size < total_bytes:
        seq += 1
        table = telemetry(rows_per_segment, seed=seq, first_id=seq * rows_per_segment)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue()
        path = directory / f"{site}-{seq}.parquet"
        path.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        manifest = Manifest.create(SegmentId.of(site, "telemetry", seq), row_count=table.num_rows,
                                   byte_size=len(data), sha256=digest,
                                   schema_fingerprint=schema_fingerprint(str(table.schema)), prev_sha256=prev,
                                   priority=2, clock=time.time)
        segments.append((manifest, path.name))
        prev, size, rows, raw = digest, size + len(data), rows + table.num_rows, raw + arrow_ipc_size(table)
    return segments, rows, raw


async def drain(hub_port: int, token: str, directory: Path, segments: list, rate_bps: float,
                rtt: float, cut_after: float | None = None) -> tuple[float, LinkProxy]:
    proxy = await LinkProxy("127.0.0.1", hub_port, state=LinkState(rate_bps=rate_bps, latency_s=rtt / 2)).start()
    loop = asyncio.get_running_loop()
    transport = AiohttpHubTransport(proxy.url, token)
    queue = MemorySegmentQueue()
    for manifest, path in segments:
        queue.add(manifest, path)
    agent = SyncAgent(queue, directory, transport, LinkMonitor(clock=loop.time), LinkPolicy(), loop.time)
    started = loop.time()
    task = asyncio.create_task(agent.run())
    cut_done = False
    try:
        while len(queue.acked_order) < len(segments):
            await asyncio.sleep(0.02)
            if cut_after is not None and not cut_done and loop.time() - started >= cut_after:
                cut_done = proxy.cut_all() > 0
        return loop.time() - started, proxy
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await transport.close()
        await proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run per link, shorter drains (~1 minute)")
    parser.add_argument("--runs", type=int, default=None, help="runs per link (default 3, quick 1)")
    parser.add_argument("--link", action="append", metavar="MBIT:RTT_MS",
                        help="only these links, e.g. --link 100:600 (default: 10 and 100 Mbit/s, 0 and 600 ms)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of data per run at the link's rate")
    args = parser.parse_args()
    links = [(float(m) * 1e6, float(r) / 1000) for m, r in (x.split(":") for x in args.link)] if args.link else LINKS
    seconds_of_data = args.seconds or SECONDS_OF_DATA[args.quick]
    runs = args.runs or (1 if args.quick else 3)
    result = BenchResult("sync_link", args.quick)
    print(f"sync goodput through the link proxy ({runs} run(s) per link)", flush=True)
    with tempfile.TemporaryDirectory() as tmp, Supervisor(Path(tmp) / "run") as supervisor:
        hub = supervisor.hub().start()
        run_no = 0
        for rate, rtt in links:
            samples, wire_ratio = [], []
            for _ in range(runs):
                run_no += 1
                site = f"bench-{run_no}"
                token = hub.add_site(site)
                directory = Path(tmp) / site
                directory.mkdir()
                payload_target = int(rate / 8 * seconds_of_data)
                segments, rows, raw = make_segments(directory, site, payload_target, rows_per_segment=50_000)
                payload = sum(m.byte_size for m, _ in segments)
                seconds, proxy = asyncio.run(drain(hub.port, token, directory, segments, rate, rtt))
                samples.append(payload / seconds / (rate / 8))
                wire_ratio.append(proxy.stats.bytes_up / raw)
            result.add(link_mbit=rate / 1e6, rtt_ms=rtt * 1000, goodput_fraction=statistics.median(samples),
                       samples=[round(s, 3) for s in samples],
                       wire_bytes_per_raw_arrow_byte=statistics.median(wire_ratio),
                       rows_per_run=rows)
        # One clean cut mid-drain at 10 Mbit/s, against the same drain without a cut: the difference in
        # bytes on the wire is what the cut cost (the chunk in flight plus a reconnect's requests).
        wire = {}
        for cut_after in (None, 1.5):
            run_no += 1
            site = f"bench-{run_no}"
            token = hub.add_site(site)
            directory = Path(tmp) / site
            directory.mkdir()
            segments, _, _ = make_segments(directory, site, int(10e6 / 8 * 4), rows_per_segment=50_000)
            _, proxy = asyncio.run(drain(hub.port, token, directory, segments, 10e6, 0.0, cut_after=cut_after))
            wire[cut_after] = (proxy.stats.bytes_up, proxy.stats.cuts)
        result.add(case="one clean cut at 10 Mbit/s", extra_bytes=wire[1.5][0] - wire[None][0], cuts=wire[1.5][1])
    result.notes.append("goodput_fraction = segment bytes committed per second / configured link byte rate")
    result.write()


if __name__ == "__main__":
    main()
