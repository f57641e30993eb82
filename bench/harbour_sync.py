"""Harbour's side of the link benchmarks: the real sync agent, in this process, against a real hub process.

The segments are built once as the edge's sealer would write them (``common.harbour_segment``) and reused
by every run: each run uploads them under a fresh table name (``t<run>``), so the hub sees new segments
with their own hash chain while the files, and so the bytes on the wire, stay identical from run to run.

The agent is configured as ``harbour edge run`` configures it (same link monitor and policy, the CLI's
default ``--max-in-flight``); what this process does not have is the edge's ingest and sealing, which
happen before a segment is queued and are measured by ``edge_ingest``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from common import harbour_segment

from edge_node.cli import run as edge_run_command
from edge_node.schemas import fingerprint
from edge_node.sync.agent import SyncAgent
from edge_node.sync.link import LinkMonitor, LinkPolicy
from edge_node.sync.memory_queue import MemorySegmentQueue
from edge_node.sync.transport import STALL_SECONDS, AiohttpHubTransport
from sync_protocol import Manifest, SegmentId
from sync_protocol.limits import GENESIS_DIGEST

SITE = "bench-ship"
PRIORITY = 2
ROWS_PER_SEGMENT = 100_000
"""About 3 MB of telemetry: what an edge seals by age at sea with a few hundred rows/s over minutes."""


def cli_max_in_flight() -> int:
    """The default of ``harbour edge run --max-in-flight``, so the bench runs what a ship runs."""
    return next(p.default for p in edge_run_command.params if p.name == "max_in_flight")


@dataclass(frozen=True)
class SegmentFile:
    path: str  # relative to the segment directory
    rows: int
    size: int
    sha256: str
    fingerprint: str


def write_segments(directory: Path, tables: list, site: str = SITE) -> list[SegmentFile]:
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for number, table in enumerate(tables, 1):
        data = harbour_segment(table, site)
        path = directory / f"{number:06d}.parquet"
        path.write_bytes(data)
        files.append(SegmentFile(path.name, table.num_rows, len(data), hashlib.sha256(data).hexdigest(),
                                 fingerprint(pq.read_schema(path))))
    return files


def manifests(files: list[SegmentFile], table: str, site: str = SITE) -> list[tuple[Manifest, str]]:
    out, prev = [], GENESIS_DIGEST
    for seq, f in enumerate(files, 1):
        manifest = Manifest.create(SegmentId.of(site, table, seq), row_count=f.rows, byte_size=f.size,
                                   sha256=f.sha256, schema_fingerprint=f.fingerprint, prev_sha256=prev,
                                   priority=PRIORITY, clock=time.time)
        out.append((manifest, f.path))
        prev = f.sha256
    return out


@dataclass
class DrainResult:
    seconds: float
    bytes_sent: int  # as counted by the agent (segment bytes, resends included)


async def drain(hub_url: str, token: str, directory: Path, queued: list[tuple[Manifest, str]], *,
                during=None, timeout: float = 600.0, stall_seconds: float = STALL_SECONDS) -> DrainResult:
    """Upload every segment; ``during(elapsed)`` is called every 20 ms (to cut or silence the link)."""
    loop = asyncio.get_running_loop()
    transport = AiohttpHubTransport(hub_url, token, stall_seconds=stall_seconds)
    queue = MemorySegmentQueue()
    for manifest, path in queued:
        queue.add(manifest, path)
    agent = SyncAgent(queue, directory, transport, LinkMonitor(clock=loop.time), LinkPolicy(), loop.time,
                      rng=random.Random(0), max_in_flight=cli_max_in_flight())  # a bench run repeats its jitter
    started = loop.time()
    task = asyncio.create_task(agent.run())
    try:
        while len(queue.acked_order) < len(queued):
            await asyncio.sleep(0.02)
            elapsed = loop.time() - started
            if elapsed > timeout:
                raise TimeoutError(f"harbour sync did not drain {len(queued)} segments in {timeout:.0f} s")
            if during is not None:
                during(elapsed)
        return DrainResult(loop.time() - started, agent.counters.bytes_sent)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await transport.close()
