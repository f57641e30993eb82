"""What every benchmark shares: the data sets, repeated timing with medians, and the JSON results.

Data sets (seeded, so every run and every peer sees the same rows):
* ``telemetry`` -- narrow rows: ship, sensor, timestamp, lat/lon random walks, a Gaussian value
  (close to incompressible: a pessimistic case for every encoding);
* ``sales`` -- wide point-of-sale rows with low-cardinality strings (venue, item, currency...), which
  compress well and reward dictionary encoding.

The machine is shared and noisy: every figure is the median of several runs, and every benchmark
reports ratios against a baseline measured in the same run, which is what stays comparable.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

RESULTS_DIR = Path(__file__).with_name("results")
SEED = 20261128

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


def arrow_ipc_size(table: pa.Table) -> int:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().size


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    samples = [measure() for _ in range(runs)]
    return statistics.median(samples), samples


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


@dataclass
class BenchResult:
    name: str
    quick: bool
    figures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **figure: Any) -> None:
        self.figures.append(figure)
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in figure.items())
        print(f"  {shown}", flush=True)

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        document = {
            "name": self.name, "quick": self.quick, "figures": self.figures, "notes": self.notes,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        path.write_text(json.dumps(document, indent=1) + "\n")
        print(f"  -> {path}", flush=True)
        return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
