"""Edge restart with a large backlog: start-up time and peak memory, against the same edge with none (G7).

The backlog is built by writing ledger rows directly through ``SegmentLedger.record_sealed`` (with
SQLite's ``synchronous=OFF`` on this bench's own connection, since durability of the fixture does not
matter): sealing 100,000 real segments through the ingest API would take far longer than the rest of
the suite. The segment files themselves are not written; start-up does not read them (it reads pending
logs and per-table ledger rows), and the sync agent only opens a file once the hub answers -- here the
edge is pointed at a closed port, so the agent runs and retries, as at sea out of coverage.

Measured per start: seconds from spawning ``harbour edge run`` to its "listening" line, then to the
first ``GET /v1/status`` answer (which counts the backlog), and the process's peak RSS over the start
plus ``SETTLE_SECONDS``. Baseline: the same with an empty ledger, same run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pyarrow as pa
from common import BenchResult, PeakRss, median, runs_for, telemetry

from edge_node.ledger import SegmentLedger
from edge_node.schemas import fingerprint
from scenarios.supervisor import Supervisor, free_port
from sync_protocol import Manifest, SegmentId, SiteId
from sync_protocol.limits import GENESIS_DIGEST

NAME = "edge_backlog"
TITLE = "Edge restart time and peak memory with a large segment backlog"
SITE = "bench-ship"
BACKLOG = {True: 20_000, False: 100_000}
TABLES = ("telemetry", "sales", "engine_log", "alarms")
SETTLE_SECONDS = 3.0
SEGMENT_BYTES = 2_000_000
SEGMENT_ROWS = 50_000


def build_backlog(data_dir: Path, segments: int) -> float:
    """Ledger rows for ``segments`` sealed, pending segments over a few tables; returns the seconds taken."""
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ledger = SegmentLedger(data_dir, SiteId(SITE), time.time)
    try:
        ledger.claim_site()
        ledger.db.execute("PRAGMA synchronous = OFF")  # a fixture: see the module docstring
        schema: pa.Schema = telemetry(1).schema
        print_every = max(1, segments // 4)
        for number in range(segments):
            table = TABLES[number % len(TABLES)]
            seq = number // len(TABLES) + 1
            prev = GENESIS_DIGEST if seq == 1 else f"{seq - 1:064x}"
            manifest = Manifest(SegmentId.of(SITE, table, seq), SEGMENT_ROWS, SEGMENT_BYTES, f"{seq:064x}",
                                fingerprint(schema), prev, 2, int(time.time() * 1000))
            ledger.record_sealed(manifest, f"segments/{table}/{seq:012d}.parquet", seq, schema)
            if number and number % print_every == 0:
                print(f"  ... {number} ledger rows", flush=True)
    finally:
        ledger.close()
    return time.perf_counter() - started


def one_start(fleet: Supervisor, data_dir: Path, rss: PeakRss, name: str) -> dict:
    edge = fleet.edge(SITE, hub_url=f"http://127.0.0.1:{free_port()}", token="not-used-hub-is-down",
                      extra=("--log-level", "WARNING"))
    edge.data = data_dir
    edge.command[edge.command.index("--data") + 1] = str(data_dir)
    started = time.perf_counter()
    edge.start()
    listening = time.perf_counter() - started
    rss.watch(name, edge.process.pid)
    status = edge.status()
    answered = time.perf_counter() - started
    time.sleep(SETTLE_SECONDS)
    edge.status()
    edge.stop()
    pending = sum(t.get("pending_segments", 0) for t in status.get("tables", []))
    return {"listening": listening, "status": answered, "pending": pending}


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs = runs_for(quick)
    backlog = BACKLOG[quick]
    print(f"{TITLE} ({runs} run(s), {backlog} segments)", flush=True)
    with tempfile.TemporaryDirectory(prefix="harbour-bench-backlog-") as tmp, \
            Supervisor(Path(tmp) / "fleet") as fleet, PeakRss() as rss:
        dirs = {0: Path(tmp) / "empty", backlog: Path(tmp) / "backlog"}
        build_backlog(dirs[0], 0)
        build_seconds = build_backlog(dirs[backlog], backlog)
        samples: dict[int, list[dict]] = {0: [], backlog: []}
        peaks: dict[int, list[float]] = {0: [], backlog: []}
        for number in range(runs):
            for size, data_dir in dirs.items():
                name = f"edge-{size}-{number}"
                samples[size].append(one_start(fleet, data_dir, rss, name))
                peaks[size].append(rss.mib()[name])
        base = samples[0]
        for size in dirs:
            got = samples[size]
            result.add(kind="restart", backlog_segments=size,
                       pending_in_status=got[0]["pending"],
                       listening_seconds=median(s["listening"] for s in got),
                       status_seconds=median(s["status"] for s in got),
                       ratio_to_empty=median(s["status"] for s in got) / median(s["status"] for s in base),
                       peak_rss_mib=median(peaks[size]),
                       rss_ratio_to_empty=median(peaks[size]) / median(peaks[0]),
                       samples=[round(s["status"], 3) for s in got])
    result.note(f"backlog built through SegmentLedger.record_sealed with synchronous=OFF in {build_seconds:.1f} s "
                f"({len(TABLES)} tables, segment files not written); the edge points at a closed hub port, so the "
                f"sync agent runs and retries. Peak RSS over start-up + {SETTLE_SECONDS:.0f} s + two status calls.")
    return result
