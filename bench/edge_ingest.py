"""Edge benchmark: durable ingest rows/s and MB/s through a real `harbour edge run`, against raw pyarrow.

For each data set (narrow telemetry rows, wider sales rows) and 1 and 16 concurrent writers, the rows are
POSTed as Arrow IPC bodies of --batch-rows rows; a write counts when the edge answered 200, i.e. when the
rows are fsync'd. The baseline, measured in the same run on the same data: pyarrow writing the same
batches as one IPC stream to a file, then one fsync -- the cheapest durable write there is. Reported:

* rows/s and raw MB/s (MB of uncompressed Arrow IPC per second), and the ratio to the baseline;
* writes per fsync group (group commit at work) from the edge's /v1/status;
* segment bytes as a ratio to raw Arrow bytes, once the edge sealed everything (Parquet + zstd);
* a small-write case: 16 writers sending 10-row writes, writes/s, which shows whether throughput
  collapses to the fsync rate.

Each configuration runs --runs times in a fresh data directory; medians are reported.
Output: bench/results/edge_ingest.json.

    .venv/bin/python bench/edge_ingest.py [--runs 3] [--rows 400000] [--batch-rows 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_node.codecs import ARROW_STREAM, encode_arrow_stream  # noqa: E402

SEED = 20261128
SMALL_WRITE_ROWS = 10
VENUES = ["Atrium Bar", "Lido Grill", "Sky Lounge", "Spa", "Casino", "Gelato", "Steakhouse", "Sushi Bar"]
ITEMS = [f"{kind} {size}" for kind in ("Espresso", "Latte", "Mojito", "Burger", "Massage", "Wine") for size in "SML"]


# The data sets of bench/common.py (same columns), generated without numpy, which the project does not
# depend on: narrow telemetry with random walks (barely compressible) and wider sales rows.
def telemetry(rows: int) -> pa.Table:
    rng = random.Random(SEED)
    lat, lon, value = 43.0, 7.0, 70.0
    lats, lons, values = [], [], []
    for _ in range(rows):
        lat, lon, value = lat + rng.gauss(0, 1e-4), lon + rng.gauss(0, 1e-4), value + rng.gauss(0, 0.5)
        lats.append(lat)
        lons.append(lon)
        values.append(value)
    return pa.table({
        "row_id": pa.array(range(rows), pa.int64()),
        "sensor": pa.array([rng.randrange(64) for _ in range(rows)], pa.int32()),
        "ts_ms": pa.array(range(1_760_000_000_000, 1_760_000_000_000 + rows * 100, 100), pa.int64()),
        "lat": lats, "lon": lons, "value": values,
    })


def sales(rows: int) -> pa.Table:
    rng = random.Random(SEED + 1)
    return pa.table({
        "row_id": pa.array(range(rows), pa.int64()),
        "ts_ms": pa.array(range(1_760_000_000_000, 1_760_000_000_000 + rows * 1000, 1000), pa.int64()),
        "venue": [rng.choice(VENUES) for _ in range(rows)],
        "item": [rng.choice(ITEMS) for _ in range(rows)],
        "quantity": pa.array([rng.randint(1, 4) for _ in range(rows)], pa.int32()),
        "unit_price": [round(rng.uniform(2, 120), 2) for _ in range(rows)],
        "currency": [rng.choice(("EUR", "USD")) for _ in range(rows)],
        "cabin": pa.array([rng.randint(1000, 9999) for _ in range(rows)], pa.int32()),
        "payment": [rng.choice(("card", "cabin", "cash")) for _ in range(rows)],
    })


DATASETS = {"telemetry": telemetry, "sales": sales}


def arrow_ipc_size(table: pa.Table) -> int:
    return len(encode_arrow_stream(table))


def write_results(figures: list[dict], notes: list[str]) -> Path:
    path = Path(__file__).resolve().parent / "results" / "edge_ingest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"name": "edge_ingest", "figures": figures, "notes": notes,
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                            "platform": platform.platform()},
                "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path


def report(figures: list[dict], **figure: object) -> None:
    figures.append(figure)
    print("  " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in figure.items()),
          flush=True)
SMALL_WRITE_SECONDS = 3.0


def baseline_seconds(batches: list[pa.Table], directory: Path) -> float:
    path = directory / "baseline.arrows"
    started = time.perf_counter()
    with open(path, "wb") as file:
        with pa.ipc.new_stream(file, batches[0].schema) as writer:
            for batch in batches:
                writer.write_table(batch)
        file.flush()
        os.fsync(file.fileno())
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


class Edge:
    def __init__(self, data_dir: Path) -> None:
        command = [sys.executable, "-m", "harbour_cli", "edge", "run", "--site", "bench-ship", "--data", str(data_dir),
                   "--listen", "127.0.0.1:0", "--seal-age", "1s", "--log-level", "WARNING"]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("harbour edge listening on"):
            raise SystemExit(f"edge did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1]

    def status(self) -> dict:
        with urllib.request.urlopen(self.url + "/v1/status", timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def post_all(url: str, table: str, bodies: list[bytes], writers: int) -> None:
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession() as session:
        async def writer() -> None:
            while queue:
                body = queue.pop()
                async with session.post(f"{url}/v1/tables/{table}", data=body,
                                        headers={"Content-Type": ARROW_STREAM}) as response:
                    if response.status != 200:
                        raise SystemExit(f"write refused: {response.status} {await response.text()}")
        await asyncio.gather(*(writer() for _ in range(writers)))


async def small_writes(url: str, body: bytes, writers: int, seconds: float) -> int:
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession() as session:
        async def writer() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.post(f"{url}/v1/tables/small", data=body,
                                        headers={"Content-Type": ARROW_STREAM}) as response:
                    assert response.status == 200
                    done += 1
        await asyncio.gather(*(writer() for _ in range(writers)))
    return done


def wait_sealed(edge: Edge, table: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tables = {t["table"]: t for t in edge.status()["tables"]}
        if table in tables and tables[table]["log_rows"] == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"{table} was not sealed within {timeout} s")


def one_run(name: str, batches: list[pa.Table], writers: int, workdir: Path) -> dict:
    bodies = [encode_arrow_stream(b) for b in batches]
    data_dir = workdir / f"edge-{name}-{writers}"
    edge = Edge(data_dir)
    try:
        started = time.perf_counter()
        asyncio.run(post_all(edge.url, name, bodies, writers))
        seconds = time.perf_counter() - started
        ingest = edge.status()["ingest"]
        wait_sealed(edge, name)
        segment_bytes = sum(p.stat().st_size for p in (data_dir / "segments" / name).glob("*.parquet"))
    finally:
        edge.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"seconds": seconds, "segment_bytes": segment_bytes,
            "writes_per_fsync": ingest["writes"] / max(ingest["fsync_groups"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--batch-rows", type=int, default=5_000)
    args = parser.parse_args()
    figures: list[dict] = []
    workdir = Path(tempfile.mkdtemp(prefix="harbour-bench-", dir=Path(__file__).resolve().parent))
    try:
        for name, make in DATASETS.items():
            table = make(args.rows)
            raw = arrow_ipc_size(table)
            batches = [table.slice(i, args.batch_rows) for i in range(0, args.rows, args.batch_rows)]
            base = statistics.median(baseline_seconds(batches, workdir) for _ in range(args.runs))
            for writers in (1, 16):
                runs = [one_run(name, batches, writers, workdir) for _ in range(args.runs)]
                seconds = statistics.median(r["seconds"] for r in runs)
                report(figures, dataset=name, writers=writers, batch_rows=args.batch_rows, rows=args.rows,
                           rows_per_s=args.rows / seconds, raw_mb_per_s=raw / seconds / 1e6,
                           baseline_rows_per_s=args.rows / base, ratio_to_baseline=base / seconds,
                           writes_per_fsync=statistics.median(r["writes_per_fsync"] for r in runs),
                           segment_to_raw_ratio=statistics.median(r["segment_bytes"] for r in runs) / raw,
                           runs_seconds=[round(r["seconds"], 3) for r in runs])
        edge = Edge(workdir / "edge-small")
        try:
            body = encode_arrow_stream(DATASETS["telemetry"](SMALL_WRITE_ROWS))
            counts = [asyncio.run(small_writes(edge.url, body, 16, SMALL_WRITE_SECONDS)) for _ in range(args.runs)]
            ingest = edge.status()["ingest"]
        finally:
            edge.stop()
        report(figures, dataset="telemetry", writers=16, batch_rows=SMALL_WRITE_ROWS,
                   writes_per_s=statistics.median(counts) / SMALL_WRITE_SECONDS,
                   writes_per_fsync=ingest["writes"] / max(ingest["fsync_groups"], 1))
        path = write_results(figures, [
            "baseline: pyarrow IPC stream of the same batches to one file + one fsync, same run",
            "raw MB = bytes of the uncompressed Arrow IPC stream of the rows (perf-limits.md units)",
            f"runs={args.runs}, medians; command: .venv/bin/python bench/edge_ingest.py " + " ".join(sys.argv[1:])])
        print(f"  -> {path}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
