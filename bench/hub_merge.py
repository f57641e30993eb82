"""Hub merge rows/s: from the first upload to every row merged into the Delta table, 1 and 20 sites at once.

A real ``harbour hub run`` receives Parquet segments over tus from one thread per site (1 MiB chunks with
sha256 checksums, one connection per request) and the clock stops when the fleet API reports every row
merged. Baselines, same rows, same run: plain ``write_deltalake`` with one append per segment, and with
one append of everything. Also: p50/p99 chunk acknowledgement time and the hub's peak RSS.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
from common import BenchResult, PeakRss, harbour_segment, median, runs_for, telemetry
from deltalake import write_deltalake

from edge_node.schemas import fingerprint
from scenarios.supervisor import Supervisor
from sync_protocol import Manifest, SegmentId
from sync_protocol.limits import GENESIS_DIGEST

NAME = "hub_merge"
TITLE = "Hub merge rows/s (tus upload to merged Delta table) vs plain write_deltalake"
CHUNK = 1024 * 1024
SITES = (1, 20)
SHAPE = {True: (2, 20_000), False: (4, 50_000)}
"""(segments per site, rows per segment)."""
MERGE_TIMEOUT_SECONDS = 600.0


def build_segments(sites: int, per_site: int, rows: int) -> tuple[dict[str, list], list[pa.Table]]:
    out, tables = {}, []
    for s in range(sites):
        site, prev, segments = f"ship-{s:02d}", GENESIS_DIGEST, []
        for seq in range(1, per_site + 1):
            first = (s * per_site + seq) * rows
            table = telemetry(rows, seed=first, first_id=first)
            tables.append(table)
            data = harbour_segment(table, site)
            digest = hashlib.sha256(data).hexdigest()
            manifest = Manifest.create(
                SegmentId.of(site, "telemetry", seq), row_count=rows, byte_size=len(data), sha256=digest,
                schema_fingerprint=fingerprint(pa.parquet.read_schema(pa.BufferReader(data))), prev_sha256=prev,
                priority=5, clock=time.time)
            prev = digest
            segments.append((manifest, data))
        out[site] = segments
    return out, tables


def request(port: int, method: str, path: str, headers: dict, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def upload_site(port: int, token: str, segments: list, latencies: list[float], errors: list[str]) -> None:
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    try:
        for manifest, data in segments:
            status, headers, body = request(port, "POST", "/v1/sync/uploads", {
                **auth, "Upload-Length": str(len(data)), "Upload-Metadata": manifest.to_upload_metadata()})
            if status != 201:
                raise RuntimeError(f"create: {status} {body[:200]!r}")
            offset = 0
            while offset < len(data):
                chunk = data[offset:offset + CHUNK]
                started = time.perf_counter()
                status, headers, body = request(port, "PATCH", f"/v1/sync/uploads/{manifest.segment.upload_key}", {
                    **auth, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset),
                    "Upload-Checksum": "sha256 " + base64.b64encode(hashlib.sha256(chunk).digest()).decode()}, chunk)
                latencies.append(time.perf_counter() - started)
                if status != 204:
                    raise RuntimeError(f"patch: {status} {body[:200]!r}")
                offset = int(headers["Upload-Offset"])
    except Exception as error:  # reported by the caller: a thread's exception would vanish
        errors.append(f"{manifest.segment}: {error}")


def run_hub_once(workdir: Path, segments: dict, total_rows: int, rss: PeakRss) -> dict:
    with Supervisor(workdir) as fleet:
        hub = fleet.hub(extra=("--log-level", "warning")).start()
        rss.watch("hub", hub.process.pid)
        tokens = {site: hub.add_site(site) for site in segments}
        operator = hub.add_operator("bench")
        latencies: list[float] = []
        errors: list[str] = []
        started = time.perf_counter()
        threads = [threading.Thread(target=upload_site, args=(hub.port, tokens[s], segs, latencies, errors))
                   for s, segs in segments.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"uploads failed: {errors[:3]}")
        uploaded = time.perf_counter() - started
        while True:
            _, _, body = request(hub.port, "GET", "/v1/fleet", {"Authorization": f"Bearer {operator}"})
            merged = sum(t["rows_merged"] for s in json.loads(body)["sites"] for t in s["tables"].values())
            if merged >= total_rows:
                break
            if time.perf_counter() - started > MERGE_TIMEOUT_SECONDS:
                raise RuntimeError(f"only {merged} of {total_rows} rows merged in {MERGE_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"seconds": elapsed, "upload_seconds": uploaded,
            "chunk_ack_p50_ms": 1000 * latencies[len(latencies) // 2],
            "chunk_ack_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


def run_plain_once(workdir: Path, tables: list[pa.Table], per_segment: bool) -> float:
    target = workdir / "plain"
    started = time.perf_counter()
    if per_segment:
        for table in tables:
            write_deltalake(str(target), table, mode="append")
    else:
        write_deltalake(str(target), pa.concat_tables(tables), mode="append")
    seconds = time.perf_counter() - started
    shutil.rmtree(target, ignore_errors=True)
    return seconds


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs = runs_for(quick)
    per_site, rows = SHAPE[quick]
    print(f"{TITLE} ({runs} run(s), {per_site} segments of {rows} rows per site)", flush=True)
    with tempfile.TemporaryDirectory(prefix="harbour-bench-hub-") as tmp, PeakRss() as rss:
        for sites in SITES:
            segments, tables = build_segments(sites, per_site, rows)
            total = sites * per_site * rows
            hub_runs, per_segment, single = [], [], []
            for number in range(runs):  # interleaved with the baselines
                hub_runs.append(run_hub_once(Path(tmp) / f"hub-{sites}-{number}", segments, total, rss))
                per_segment.append(total / run_plain_once(Path(tmp), tables, True))
                single.append(total / run_plain_once(Path(tmp), tables, False))
            rate = total / median(r["seconds"] for r in hub_runs)
            result.add(kind="merge", sites=sites, rows=total, rows_per_s=rate,
                       segment_mb=sum(len(d) for s in segments.values() for _, d in s) / 1e6,
                       upload_seconds=median(r["upload_seconds"] for r in hub_runs),
                       chunk_ack_p50_ms=median(r["chunk_ack_p50_ms"] for r in hub_runs),
                       chunk_ack_p99_ms=median(r["chunk_ack_p99_ms"] for r in hub_runs),
                       plain_per_segment_rows_per_s=median(per_segment), plain_one_append_rows_per_s=median(single),
                       ratio_to_plain_per_segment=rate / median(per_segment),
                       ratio_to_plain_one_append=rate / median(single),
                       samples=[round(r["seconds"], 3) for r in hub_runs])
    result.add(kind="peak_rss", hub_mib=rss.mib()["hub"])
    result.note("plain write_deltalake runs in this process on the same rows (no upload, no lineage columns, "
                "no exactly-once ledger): the price of what the hub adds.")
    return result
