"""Bytes per row of the same rows in every encoding a peer would ship, and what encoding them costs.

Baseline: raw Arrow (the uncompressed IPC stream), measured on the same rows. Encodings: Harbour's
segment as the edge seals it; default pyarrow Parquet (what rsync would copy); Parquet with zstd;
Arrow IPC with zstd buffers (Flight's compressed stream); JSON lines and JSON lines + gzip (the
JSON/HTTP peer). Encode rate: rows/s of one thread, median of the runs.
"""

from __future__ import annotations

import io
import time

import pyarrow.parquet as pq
from common import (
    DATASETS,
    BenchResult,
    arrow_ipc_bytes,
    default_parquet,
    harbour_segment,
    json_gzip,
    json_lines,
    median,
    runs_for,
)

NAME = "formats"
TITLE = "Bytes per row by encoding (same rows), and encode rate"
ROWS = {True: 100_000, False: 300_000}


def _parquet_zstd(table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


ENCODINGS = {
    "raw_arrow_ipc": arrow_ipc_bytes,
    "harbour_segment": lambda t: harbour_segment(t, "bench-ship"),
    "default_parquet": default_parquet,
    "parquet_zstd": _parquet_zstd,
    "arrow_ipc_zstd": lambda t: arrow_ipc_bytes(t, "zstd"),
    "json_lines": json_lines,
    "json_gzip": json_gzip,
}


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs = runs_for(quick)
    for dataset, make in DATASETS.items():
        table = make(ROWS[quick])
        raw = len(arrow_ipc_bytes(table))
        for encoding, encode in ENCODINGS.items():
            seconds = []
            for _ in range(runs):
                started = time.perf_counter()
                size = len(encode(table))
                seconds.append(time.perf_counter() - started)
            result.add(kind="format", dataset=dataset, encoding=encoding, rows=table.num_rows,
                       bytes_per_row=size / table.num_rows, ratio_to_raw_arrow=size / raw,
                       encode_rows_per_s=table.num_rows / median(seconds))
    result.note("harbour_segment includes the _site lineage column the edge adds; the others carry the rows only.")
    result.note("json_lines: one json.dumps per row from Table.to_pylist(); json_gzip adds gzip level 6.")
    return result
