"""Freshness: seconds from the edge's 200 to the row being queryable at the hub, with the defaults.

Two links, each a short voyage of one real ship through the scenario machinery (real `harbour hub run`
and `harbour edge run` processes, the user-space link proxy, no tuning flags on the edge):

* ``loopback``: a perfect link; alarms (class 0), telemetry (class 1) and sales (class 7) each written
  once a second. Goal: p99 <= 5 s for every class.
* ``sea``: 512 kbit/s with a 600 ms round trip, alarms (class 0) written once a second while a telemetry
  backlog (class 1, written faster than the link carries it, sealed at 1 MiB / 20 s so that it is on the
  link as segments rather than in the log) keeps the link full. Goal: class-0 p99 <= 10 s.

Baseline, measured in the same run: the link's own delay for one write (one round trip plus the bytes of
a typical segment at the link's rate) -- the ratio says how many such delays the pipeline adds.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path

from common import BenchResult, median, runs_for

from scenarios.freshness import FLEET
from scenarios.runner import run_scenario
from scenarios.spec import parse

NAME = "freshness"
TITLE = "Freshness with the defaults: edge 200 -> queryable at the hub"


def voyage(link: dict, tables: dict, seconds: float, edge: dict) -> dict:
    return {
        "scenario": {"name": f"freshness-{link['name']}", "simulated_hours": seconds / 3600, "real_seconds": seconds,
                     "drain_timeout_seconds": 120, "write_interval_seconds": 1.0, "sample_seconds": 2.0,
                     "drain_profile": link["name"]},
        "edge": {"log_level": "warning", **edge},
        "tables": tables,
        "links": {link["name"]: {k: v for k, v in link.items() if k != "name"}},
        "ships": [{"name": "aurora", "voyage": [[link["name"], seconds / 3600]]}],
        "faults": [],
    }


CASES = {
    "loopback": ({"name": "loopback", "port": True}, {
        "alarms": {"workload": "alarms", "priority": 0, "rows_per_second": 1},
        "telemetry": {"workload": "telemetry", "priority": 1, "rows_per_second": 50},
        "sales": {"workload": "point_of_sale", "priority": 7, "rows_per_second": 20},
    }, 0.0, 0.0, {}),  # the defaults: seal age 5 min, seal size 64 MiB, no tuning
    "sea": ({"name": "sea", "rate": "512kbit", "rtt_ms": 600}, {
        "alarms": {"workload": "alarms", "priority": 0, "rows_per_second": 1},
        "telemetry": {"workload": "telemetry", "priority": 1, "rows_per_second": 5000},  # > the link: a backlog
    }, 512e3, 0.6, {"seal_size": "1MiB", "seal_age": "20s"}),  # so that the backlog is segments on the link
}


async def one_run(case: str, seconds: float, workdir: Path) -> dict:
    link, tables, rate, rtt, edge = CASES[case]
    result = await run_scenario(parse(voyage(link, tables, seconds, edge)), 1, workdir, echo=lambda line: None)
    fleet = result.freshness.get(FLEET, {})
    return {"passed": result.check.passed, **{table: fleet.get(table) for table in tables},
            "baseline_seconds": rtt + (4096 * 8 / rate if rate else 0.0)}


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs = runs_for(quick)
    seconds = 30.0 if quick else 60.0
    with tempfile.TemporaryDirectory(prefix="harbour-bench-freshness-") as tmp:
        for case, (_, tables, _, _, _) in CASES.items():
            samples = [asyncio.run(one_run(case, seconds, Path(tmp) / f"{case}-{n}")) for n in range(runs)]
            for table in tables:
                got = [s[table] for s in samples if s[table]]
                if not got:
                    result.note(f"{case}/{table}: no row was merged")
                    continue
                baseline = samples[0]["baseline_seconds"]
                p99 = median(g["p99"] for g in got)
                result.add(kind="freshness", link=case, table=table, priority=tables[table]["priority"],
                           p50_s=median(g["p50"] for g in got), p99_s=p99, max_s=max(g["max"] for g in got),
                           writes=int(statistics.mean(g["writes"] for g in got)), runs=len(got),
                           link_delay_s=round(baseline, 3),
                           p99_vs_link_delay=round(p99 / baseline, 1) if baseline else None,
                           all_rows_arrived=all(s["passed"] for s in samples))
    result.note("Each figure is over every write of the voyage (one write per table per second), medians of "
                "the runs' p50/p99, the largest max. Rows are queryable once the Delta commit that lists their "
                "segment is written (its timestamp, against the scenario's clock at the edge's 200).")
    result.note("link_delay_s: the link's round trip plus 4 KiB at its rate, the least any sync could take.")
    return result
