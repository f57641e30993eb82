"""Harbour's benchmark suite: one entry point for every benchmark and its peers.

    python bench/run.py                  # the full suite (~20-25 minutes on the 2-core dev machine)
    python bench/run.py --quick          # one run each, small data (~3 minutes)
    python bench/run.py --only link faults
    python bench/run.py --list
    python bench/render.py               # bench/results/*.json -> docs/benchmarks.md + docs/img/*.png

Each benchmark prints its figures as it goes (medians of several runs, ratios against a baseline
measured in the same run) and writes ``bench/results/NAME.json``. A failing benchmark is reported and
the suite goes on; the exit status says whether any failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHMARKS = {
    "formats": "bytes per row of every encoding (raw Arrow, Harbour segment, default Parquet, JSON+gzip, IPC zstd)",
    "edge_ingest": "durable edge ingest rows/s vs pyarrow IPC write + fsync",
    "link": "goodput at 10/100 Mbit/s x 0/600 ms RTT: Harbour vs rsync vs JSON/HTTP; wire bytes per row",
    "faults": "extra bytes of one clean cut and one silent stall: Harbour vs rsync --partial",
    "loopback": "unthrottled loopback sync rows/s vs Arrow Flight do_put (uncompressed, zstd)",
    "hub_merge": "hub merge rows/s with 20 concurrent sites vs plain write_deltalake",
    "edge_backlog": "edge restart time and peak memory with a 100,000-segment backlog vs an empty ledger",
    "light_fleet": "hundreds of light ships speaking tus to one hub process: chunk ack p99, RSS, exactly once",
    "freshness": "edge 200 -> queryable at the hub with the defaults: loopback, and class 0 at 512 kbit/s / 600 ms",
    "fleet_status": "hub progress() and /v1/fleet with 100 vs 100,000 segments per site vs the full recomputation",
    "downlink": "dataset download goodput at 512 kbit/s / 600 ms and 50 Mbit/s vs the link and a plain GET; cut costs",
}
"""Name -> what it measures; each is a module ``bench/NAME.py`` with ``run(quick) -> BenchResult``."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run each on small data (about 3 minutes)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only these: {', '.join(BENCHMARKS)}")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--results", type=Path, default=None, help="where to write NAME.json (default bench/results)")
    args = parser.parse_args(argv)
    if args.list:
        for name, what in BENCHMARKS.items():
            print(f"{name:13} {what}")
        return 0
    command = "python bench/run.py" + (" " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 else "")
    failed = []
    started = time.perf_counter()
    for name in args.only or list(BENCHMARKS):
        print(f"\n== {name}: {BENCHMARKS[name]}", flush=True)
        begun = time.perf_counter()
        try:
            result = importlib.import_module(name).run(args.quick)
            result.write(command, *([args.results] if args.results else []))
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"   ({name}: {time.perf_counter() - begun:.0f} s)", flush=True)
    print(f"\nsuite: {time.perf_counter() - started:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
