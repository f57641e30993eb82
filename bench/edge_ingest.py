"""Durable edge ingest rows/s through a real ``harbour edge run``, against raw pyarrow IPC + fsync.

For each data set and 1 and 16 concurrent writers, the rows are POSTed as Arrow IPC bodies of
``BATCH_ROWS`` rows; a write counts when the edge answered 200, i.e. when its rows are fsync'd (G1).
Baseline, same run, same batches: pyarrow writing them as one IPC stream to a file, then one fsync --
the cheapest durable write there is. Also reported: writes per fsync group (group commit at work, from
/v1/status), sealed segment bytes per raw Arrow byte, the edge's peak RSS, and a small-write case
(16 writers of 10-row writes: does throughput collapse to the fsync rate?).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import pyarrow as pa
from common import DATASETS, BenchResult, PeakRss, arrow_ipc_size, median, runs_for

from edge_node.codecs import ARROW_STREAM, encode_arrow_stream
from scenarios.supervisor import EdgeProcess, Supervisor

NAME = "edge_ingest"
TITLE = "Durable edge ingest vs pyarrow IPC write + fsync"
ROWS = {True: 100_000, False: 400_000}
BATCH_ROWS = 5_000
WRITERS = (1, 16)
SMALL_WRITE_ROWS = 10
SMALL_WRITE_SECONDS = {True: 2.0, False: 3.0}
SEAL_TIMEOUT_SECONDS = 120.0


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


async def post_all(url: str, table: str, bodies: list[bytes], writers: int) -> None:
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession() as session:
        async def writer() -> None:
            while queue:
                body = queue.pop()
                async with session.post(f"{url}/v1/tables/{table}", data=body,
                                        headers={"Content-Type": ARROW_STREAM}) as response:
                    if response.status != 200:
                        raise RuntimeError(f"write refused: {response.status} {await response.text()}")
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
                    if response.status != 200:
                        raise RuntimeError(f"small write refused: {response.status}")
                    done += 1
        await asyncio.gather(*(writer() for _ in range(writers)))
    return done


def _start_edge(fleet: Supervisor, name: str, rss: PeakRss) -> EdgeProcess:
    edge = fleet.edge(name, extra=("--seal-age", "1s", "--log-level", "WARNING")).start()
    rss.watch("edge", edge.process.pid)
    return edge


def _wait_sealed(edge: EdgeProcess, table: str) -> None:
    deadline = time.monotonic() + SEAL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        tables = {t["table"]: t for t in edge.status()["tables"]}
        if table in tables and tables[table]["log_rows"] == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{table} was not sealed within {SEAL_TIMEOUT_SECONDS:.0f} s")


def one_run(fleet: Supervisor, rss: PeakRss, name: str, bodies: list[bytes], writers: int, run: int) -> dict:
    edge = _start_edge(fleet, f"ingest-{name}-{writers}-{run}", rss)
    try:
        started = time.perf_counter()
        asyncio.run(post_all(edge.url, name, bodies, writers))
        seconds = time.perf_counter() - started
        ingest = edge.status()["ingest"]
        _wait_sealed(edge, name)
        segment_bytes = sum(p.stat().st_size for p in (edge.data / "segments" / name).glob("*.parquet"))
    finally:
        edge.stop()
        shutil.rmtree(edge.data, ignore_errors=True)
    return {"seconds": seconds, "segment_bytes": segment_bytes,
            "writes_per_fsync": ingest["writes"] / max(ingest["fsync_groups"], 1)}


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs, rows = runs_for(quick), ROWS[quick]
    print(f"{TITLE} ({runs} run(s), {rows} rows per data set)", flush=True)
    with tempfile.TemporaryDirectory(prefix="harbour-bench-ingest-") as tmp, \
            Supervisor(Path(tmp) / "fleet") as fleet, PeakRss() as rss:
        for name, make in DATASETS.items():
            table = make(rows)
            raw = arrow_ipc_size(table)
            batches = [table.slice(i, BATCH_ROWS) for i in range(0, rows, BATCH_ROWS)]
            bodies = [encode_arrow_stream(b) for b in batches]
            base = median(baseline_seconds(batches, Path(tmp)) for _ in range(runs))
            for writers in WRITERS:
                got = [one_run(fleet, rss, name, bodies, writers, n) for n in range(runs)]
                seconds = median(r["seconds"] for r in got)
                result.add(kind="ingest", dataset=name, writers=writers, batch_rows=BATCH_ROWS, rows=rows,
                           rows_per_s=rows / seconds, raw_mb_per_s=raw / seconds / 1e6,
                           baseline_rows_per_s=rows / base, ratio_to_baseline=base / seconds,
                           writes_per_fsync=median(r["writes_per_fsync"] for r in got),
                           segment_to_raw_arrow=median(r["segment_bytes"] for r in got) / raw,
                           samples=[round(r["seconds"], 3) for r in got])
        edge = _start_edge(fleet, "ingest-small", rss)
        try:
            body = encode_arrow_stream(DATASETS["telemetry"](SMALL_WRITE_ROWS))
            seconds = SMALL_WRITE_SECONDS[quick]
            counts = [asyncio.run(small_writes(edge.url, body, 16, seconds)) for _ in range(runs)]
            ingest = edge.status()["ingest"]
        finally:
            edge.stop()
        result.add(kind="small_writes", dataset="telemetry", writers=16, batch_rows=SMALL_WRITE_ROWS,
                   writes_per_s=median(counts) / seconds,
                   writes_per_fsync=ingest["writes"] / max(ingest["fsync_groups"], 1))
    result.add(kind="peak_rss", edge_mib=rss.mib()["edge"])
    result.note("baseline: pyarrow IPC stream of the same batches to one file + one fsync, same run")
    result.note("raw MB = bytes of the uncompressed Arrow IPC stream of the rows; the edge runs with --seal-age 1s")
    return result
