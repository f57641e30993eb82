"""Hub benchmark: rows/s from upload to merged Delta table, for 1 and 20 concurrent sites.

Runs a real `harbour hub run` subprocess, uploads Parquet segments over tus from N threads (one per
site, 1 MiB chunks with sha1 checksums), and measures:

* rows/s from the first request until the fleet API reports every row merged;
* p50/p99 of the time from sending a chunk to its acknowledgement (204);
* the same rows written with plain ``write_deltalake`` in the same run, both as one append per segment
  and as one append of everything, and the hub's rate as a ratio to each.

Each configuration runs ``--runs`` times; medians are reported. Output: bench/results/hub_merge.json.

    .venv/bin/python bench/hub_merge.py [--runs 3] [--rows-per-segment 50000] [--segments-per-site 4]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import io
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import write_deltalake

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sync_protocol.identifiers import SegmentId  # noqa: E402
from sync_protocol.limits import GENESIS_DIGEST  # noqa: E402
from sync_protocol.manifest import Manifest, schema_fingerprint  # noqa: E402

CHUNK = 1024 * 1024


def telemetry(rng: random.Random, first: int, n: int) -> pa.Table:
    return pa.table({
        "row_id": pa.array(range(first, first + n), pa.int64()),
        "ts": pa.array([1_700_000_000_000_000 + i * 1000 for i in range(n)], pa.timestamp("us", tz="UTC")),
        "sensor": pa.array([f"sensor-{rng.randrange(200)}" for _ in range(n)]),
        "value": pa.array([rng.gauss(0, 1) for _ in range(n)], pa.float64()),
        "status": pa.array([rng.randrange(5) for _ in range(n)], pa.int32()),
    })


def build_segments(sites: int, per_site: int, rows: int, seed: int = 7):
    rng = random.Random(seed)
    out, tables = {}, []
    for s in range(sites):
        site, prev, segments = f"ship-{s:02d}", GENESIS_DIGEST, []
        for seq in range(1, per_site + 1):
            table = telemetry(rng, (s * per_site + seq) * rows, rows)
            tables.append(table)
            sink = io.BytesIO()
            pq.write_table(table, sink, compression="zstd")
            data = sink.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            manifest = Manifest.create(
                SegmentId.of(site, "telemetry", seq), row_count=rows, byte_size=len(data), sha256=digest,
                schema_fingerprint=schema_fingerprint(str(table.schema)), prev_sha256=prev, priority=5,
                clock=lambda: 1_700_000_000.0,
            )
            prev = digest
            segments.append((manifest, data))
        out[site] = segments
    return out, tables


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def harbour(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "harbour_cli", *args], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()


def request(port, method, path, headers, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def upload_site(port, token, segments, latencies):
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    for manifest, data in segments:
        status, headers, body = request(port, "POST", "/v1/sync/uploads", {
            **auth, "Upload-Length": str(len(data)), "Upload-Metadata": manifest.to_upload_metadata()})
        assert status == 201, body
        offset = 0
        while offset < len(data):
            chunk = data[offset:offset + CHUNK]
            started = time.perf_counter()
            status, headers, body = request(port, "PATCH", f"/v1/sync/uploads/{manifest.segment.upload_key}", {
                **auth, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset),
                "Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(chunk).digest()).decode()}, chunk)
            latencies.append(time.perf_counter() - started)
            assert status == 204, body
            offset = int(headers["Upload-Offset"])


def run_hub_once(segments, total_rows) -> dict:
    work = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    try:
        data = work / "hub"
        tokens = {site: harbour("hub", "add-site", site, "--data", str(data)) for site in segments}
        operator = harbour("hub", "add-operator", "bench", "--data", str(data))
        port = free_port()
        log = open(work / "hub.log", "wb")  # noqa: SIM115
        process = subprocess.Popen([sys.executable, "-m", "harbour_cli", "hub", "run", "--data", str(data),
                                    "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
                                   cwd=REPO, stdout=log, stderr=log)
        try:
            for _ in range(600):
                try:
                    if request(port, "GET", "/healthz", {})[0] == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            latencies: list[float] = []
            started = time.perf_counter()
            threads = [threading.Thread(target=upload_site, args=(port, tokens[s], segs, latencies))
                       for s, segs in segments.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            uploaded = time.perf_counter() - started
            while True:
                _, _, body = request(port, "GET", "/v1/fleet", {"Authorization": f"Bearer {operator}"})
                merged = sum(t["rows_merged"] for s in json.loads(body)["sites"] for t in s["tables"].values())
                if merged >= total_rows:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(30)
            log.close()
        latencies.sort()
        return {"seconds": elapsed, "upload_seconds": uploaded, "rows_per_s": total_rows / elapsed,
                "chunk_ack_p50_ms": 1000 * latencies[len(latencies) // 2],
                "chunk_ack_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                "chunks": len(latencies)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_plain_once(tables, per_segment: bool) -> float:
    work = Path(tempfile.mkdtemp(prefix="delta-bench-"))
    try:
        started = time.perf_counter()
        if per_segment:
            for table in tables:
                write_deltalake(str(work / "t"), table, mode="append")
        else:
            write_deltalake(str(work / "t"), pa.concat_tables(tables), mode="append")
        return time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows-per-segment", type=int, default=50_000)
    parser.add_argument("--segments-per-site", type=int, default=4)
    parser.add_argument("--sites", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "hub_merge.json")
    args = parser.parse_args()
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "rows_per_segment": args.rows_per_segment, "segments_per_site": args.segments_per_site,
               "runs": args.runs, "configs": []}
    for sites in args.sites:
        segments, tables = build_segments(sites, args.segments_per_site, args.rows_per_segment)
        total = sites * args.segments_per_site * args.rows_per_segment
        hub_runs = [run_hub_once(segments, total) for _ in range(args.runs)]
        per_segment = [total / run_plain_once(tables, True) for _ in range(args.runs)]
        single = [total / run_plain_once(tables, False) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in hub_runs) for k in hub_runs[0]}
        config = {
            "sites": sites, "rows": total, "segment_bytes_total": sum(len(d) for s in segments.values() for _, d in s),
            "hub": {k: round(v, 3) for k, v in med.items()},
            "plain_write_deltalake_per_segment_rows_per_s": round(statistics.median(per_segment)),
            "plain_write_deltalake_one_append_rows_per_s": round(statistics.median(single)),
        }
        config["ratio_hub_to_per_segment"] = round(med["rows_per_s"] / config[
            "plain_write_deltalake_per_segment_rows_per_s"], 3)
        config["ratio_hub_to_one_append"] = round(med["rows_per_s"] / config[
            "plain_write_deltalake_one_append_rows_per_s"], 3)
        results["configs"].append(config)
        print(json.dumps(config, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
