"""What every benchmark shares: the data sets, their encodings, medians, peak memory and the JSON results.

Data sets (seeded, so every run and every peer sees the same rows):
* ``telemetry`` -- narrow rows: sensor, timestamp, lat/lon random walks, a drifting reading
  (the floats are close to incompressible: a pessimistic case for every encoding);
* ``sales`` -- wide point-of-sale rows with low-cardinality strings (venue, item, currency...), which
  compress well and reward dictionary encoding.

Encodings of the same rows, so that every peer moves the same data:
* ``harbour_segment`` -- what the edge's sealer writes (Parquet, zstd at the edge's level, the ``_site``
  lineage column, the edge's row-group size);
* ``default_parquet`` -- ``pq.write_table`` with pyarrow's defaults (snappy): what a team would rsync;
* ``json_gzip`` -- JSON lines from ``json.dumps`` per row, gzip (level 6): the pipeline written in a day.

The machine is shared and noisy: every figure is the median of several runs, and every benchmark
reports ratios against a baseline measured in the same run, which is what stays comparable.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edge_node.config import PARQUET_COMPRESSION_LEVEL, PARQUET_ROW_GROUP_ROWS  # noqa: E402
from edge_node.sealer import column_encodings, with_site  # noqa: E402
from sync_protocol import SiteId  # noqa: E402

RESULTS_DIR = Path(__file__).with_name("results")
SEED = 20261128
MB = 1e6

VENUES = ["Atrium Bar", "Lido Grill", "Sky Lounge", "Spa", "Casino", "Gelato", "Steakhouse", "Sushi Bar",
          "Pool Deck", "Theatre Kiosk", "Duty Free", "Coffee House"]
ITEMS = [f"{kind} {size}" for kind in ("Espresso", "Latte", "Mojito", "Spritz", "Burger", "Sushi Set", "Massage",
                                       "Chips", "Wine Glass", "Beer", "Sundae", "Perfume")
         for size in ("S", "M", "L")]


def telemetry(rows: int, *, seed: int = SEED, first_id: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 1e-4, size=(rows, 2)).cumsum(axis=0)
    return pa.table({
        "row_id": pa.array(np.arange(first_id, first_id + rows, dtype=np.int64)),
        "sensor": pa.array(rng.integers(0, 64, rows, dtype=np.int32)),
        "ts_ms": pa.array(1_760_000_000_000 + np.arange(rows, dtype=np.int64) * 100),
        "lat": pa.array(43.0 + steps[:, 0]),
        "lon": pa.array(7.0 + steps[:, 1]),
        "value": pa.array(rng.normal(70, 5, rows).cumsum() / np.arange(1, rows + 1)),
    })


def sales(rows: int, *, seed: int = SEED, first_id: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed + 1)
    venue = rng.integers(0, len(VENUES), rows)
    item = rng.integers(0, len(ITEMS), rows)
    return pa.table({
        "row_id": pa.array(np.arange(first_id, first_id + rows, dtype=np.int64)),
        "ts_ms": pa.array(1_760_000_000_000 + np.arange(rows, dtype=np.int64) * 1000),
        "venue": pa.array(np.array(VENUES, dtype=object)[venue], pa.string()),
        "item": pa.array(np.array(ITEMS, dtype=object)[item], pa.string()),
        "quantity": pa.array(rng.integers(1, 5, rows, dtype=np.int32)),
        "unit_price": pa.array(np.round(rng.uniform(2, 120, rows), 2)),
        "currency": pa.array(np.array(["EUR", "USD"], dtype=object)[rng.integers(0, 2, rows)], pa.string()),
        "cabin": pa.array(rng.integers(1000, 9999, rows, dtype=np.int32)),
        "payment": pa.array(np.array(["card", "cabin", "cash"], dtype=object)[rng.integers(0, 3, rows)],
                            pa.string()),
    })


DATASETS: dict[str, Callable[..., pa.Table]] = {"telemetry": telemetry, "sales": sales}


# -- encodings ---------------------------------------------------------------------------------------

def arrow_ipc_bytes(table: pa.Table, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def arrow_ipc_size(table: pa.Table) -> int:
    return len(arrow_ipc_bytes(table))


def harbour_segment(table: pa.Table, site: str) -> bytes:
    """The rows as the edge's sealer writes them (edge_node/sealer.py: same constants, same encodings)."""
    rows = with_site(table, SiteId(site))
    dictionary, encodings = column_encodings(rows.schema)
    sink = io.BytesIO()
    pq.write_table(rows, sink, compression="zstd", compression_level=PARQUET_COMPRESSION_LEVEL,
                   row_group_size=PARQUET_ROW_GROUP_ROWS, use_dictionary=dictionary, column_encoding=encodings)
    return sink.getvalue()


def default_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)  # pyarrow's defaults: snappy, dictionaries, 1Mi-row groups
    return sink.getvalue()


def json_lines(table: pa.Table) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in table.to_pylist())


def json_gzip(table: pa.Table) -> bytes:
    return gzip.compress(json_lines(table), compresslevel=6)


# -- timing, medians, memory -----------------------------------------------------------------------

def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def runs_for(quick: bool, full: int = 3) -> int:
    return 1 if quick else full


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


class PeakRss:
    """Samples the resident memory of some processes (each with its children) every ``interval`` s in a
    thread; ``peak[name]`` is the largest sum seen. ``/proc`` through psutil: no cooperation needed."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak: dict[str, int] = {}
        self._pids: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="peak-rss")

    def watch(self, name: str, pid: int) -> PeakRss:
        self._pids[name] = pid
        self.peak.setdefault(name, 0)
        self._sample(name, pid)
        return self

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for name, pid in list(self._pids.items()):
                self._sample(name, pid)

    def _sample(self, name: str, pid: int) -> None:
        try:
            process = psutil.Process(pid)
            total = process.memory_info().rss
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        except psutil.Error:
            return
        self.peak[name] = max(self.peak.get(name, 0), total)

    def mib(self) -> dict[str, float]:
        return {name: round(value / 2**20, 1) for name, value in self.peak.items()}


# -- results ---------------------------------------------------------------------------------------

@dataclass
class BenchResult:
    """One benchmark's figures. Each figure is a flat dict; ``table`` groups figures into one rendered
    table of docs/benchmarks.md, ``baseline`` names what its ``ratio`` is measured against."""

    name: str
    quick: bool
    title: str = ""
    figures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(self, **figure: Any) -> dict[str, Any]:
        self.figures.append(figure)
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in figure.items() if not isinstance(v, list | dict))
        print(f"  {shown}", flush=True)
        return figure

    def note(self, text: str) -> None:
        self.notes.append(text)

    def write(self, command: str, directory: Path = RESULTS_DIR) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        document = {
            "name": self.name, "title": self.title, "quick": self.quick, "command": command,
            "seconds": round(time.time() - self.started, 1), "figures": self.figures, "notes": self.notes,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                        "pyarrow": pa.__version__},
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        path.write_text(json.dumps(document, indent=1, default=_jsonable) + "\n")
        print(f"  -> {path}", flush=True)
        return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {value!r}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
