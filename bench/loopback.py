"""Unthrottled loopback: Harbour's sync rows/s against Arrow Flight ``do_put`` of the same rows.

No link proxy: what the software can do when the network is not the limit (a ship in port on fibre).

* **harbour** -- the real sync agent (in this process) to a real hub process: tus PATCHes with per-chunk
  sha256, the hub's fsync + ledger commit, acked per segment. The segments are sealed before the clock
  starts (the edge seals in the background, off the sync path); ``harbour_incl_seal`` adds the time the
  sealer's Parquet encoding of the same rows takes on one core, for a like-for-like comparison with
  Flight, which encodes while it sends.
* **flight** / **flight_zstd** -- ``pyarrow.flight`` ``do_put`` of the rows in 64Ki-row batches, IPC
  uncompressed or with zstd buffers, to a server in its own process that writes an IPC file and fsyncs.

Baseline: Flight uncompressed, measured in the same run.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
from common import BenchResult, PeakRss, harbour_segment, median, runs_for, telemetry
from harbour_sync import ROWS_PER_SEGMENT, SITE, drain, manifests, write_segments
from peers import ServerProcess

from scenarios.supervisor import Supervisor

NAME = "loopback"
TITLE = "Loopback sync rows/s: Harbour vs Arrow Flight do_put"
SEGMENTS = {True: 8, False: 30}
FLIGHT_BATCH_ROWS = 64 * 1024


def _flight_put(port: int, tables: list[pa.Table], compression: str | None) -> float:
    client = flight.connect(f"grpc://127.0.0.1:{port}")
    options = flight.FlightCallOptions(write_options=pa.ipc.IpcWriteOptions(compression=compression))
    try:
        started = time.perf_counter()
        for table in tables:  # one stream per segment's rows, as an edge would send a sealed batch
            writer, _ = client.do_put(flight.FlightDescriptor.for_path("telemetry"), table.schema, options)
            writer.write_table(table, max_chunksize=FLIGHT_BATCH_ROWS)
            writer.close()
        return time.perf_counter() - started
    finally:
        client.close()


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs = runs_for(quick)
    tables = [telemetry(ROWS_PER_SEGMENT, seed=n, first_id=n * ROWS_PER_SEGMENT) for n in range(SEGMENTS[quick])]
    rows = sum(t.num_rows for t in tables)
    print(f"{TITLE} ({runs} run(s), {rows} rows)", flush=True)
    with tempfile.TemporaryDirectory(prefix="harbour-bench-loopback-") as tmp, \
            Supervisor(Path(tmp) / "fleet") as fleet, ServerProcess("flight", Path(tmp) / "flight") as server, \
            PeakRss() as rss:
        hub = fleet.hub().start()
        rss.watch("hub", hub.process.pid).watch("flight_server", server.pid)
        token = hub.add_site(SITE)
        segment_dir = Path(tmp) / "segments"
        seal_seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            for table in tables:
                harbour_segment(table, SITE)
            seal_seconds.append(time.perf_counter() - started)
        segments = write_segments(segment_dir, tables)
        samples: dict[str, list[float]] = {"harbour": [], "flight": [], "flight_zstd": []}
        for number in range(runs):
            queued = manifests(segments, table=f"loop_{number}")
            samples["harbour"].append(asyncio.run(drain(hub.url, token, segment_dir, queued)).seconds)
            samples["flight"].append(_flight_put(server.port, tables, None))
            samples["flight_zstd"].append(_flight_put(server.port, tables, "zstd"))
            for path in server.directory.glob("*.arrows"):
                path.unlink()
        samples["harbour_incl_seal"] = [h + median(seal_seconds) for h in samples["harbour"]]
        baseline = rows / median(samples["flight"])
        for method in ("harbour", "harbour_incl_seal", "flight", "flight_zstd"):
            rate = rows / median(samples[method])
            result.add(kind="loopback", method=method, rows=rows, rows_per_s=rate, ratio_to_flight=rate / baseline,
                       seconds=median(samples[method]), samples=[round(s, 3) for s in samples[method]])
    result.add(kind="peak_rss", **{f"{name}_mib": value for name, value in rss.mib().items()})
    result.note(f"{len(tables)} segments/streams of {ROWS_PER_SEGMENT} telemetry rows; both receivers fsync "
                "before answering; Harbour's hub also merges into Delta tables meanwhile (same 2 cores).")
    return result
