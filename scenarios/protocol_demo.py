"""The protocol walk-through: three ships send segments to a hub through a link that fails on purpose.

This runs the sync protocol's sender over a simulated link (``sync_protocol.simulation``) against the
hub's real upload service over in-memory storage (``hub.simulated_hub``) in one process -- no sockets,
no disks -- and reports, per ship, what the link did to it and what arrived. It is what ``make demo``
shows until the fleet scenarios drive real hub and edge processes; it exits non-zero if any segment was
lost, duplicated or damaged.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from hub.simulated_hub import InMemoryHub
from sync_protocol.chain import ChainLink, chain_status
from sync_protocol.simulation import Fault, Simulation, build_segments

SHIPS = ("aurora", "borealis", "corona")
TABLES = ("alarms", "telemetry", "sales")
SEGMENTS_PER_TABLE = 4
FAULT_RATE = 0.35
"""A third of all requests hit a fault: far worse than any real satellite link, so every fault kind shows up."""


@dataclass
class ShipResult:
    ship: str
    segments: int
    committed_once: int
    duplicated: int
    lost: int
    damaged: int
    watermark_ok: bool
    requests: int
    payload_bytes: int
    bytes_sent: int
    faults: Counter[str]


def run_ship(ship: str, rng: random.Random) -> ShipResult:
    with InMemoryHub() as hub:
        return _run_ship(ship, rng, hub)


def _run_ship(ship: str, rng: random.Random, hub: InMemoryHub) -> ShipResult:
    result = ShipResult(ship, 0, 0, 0, 0, 0, True, 0, 0, 0, Counter())
    kinds = [fault for fault in Fault if fault is not Fault.NONE]
    for table in TABLES:
        payloads = [rng.randbytes(rng.randrange(2_000, 20_000)) for _ in range(SEGMENTS_PER_TABLE)]
        edge = build_segments(ship, table, payloads)
        faults = [rng.choice(kinds) if rng.random() < FAULT_RATE else Fault.NONE for _ in range(400)]
        stats = Simulation(hub, edge, faults, rng, chunk_size=1024, min_chunk=128).run()
        for manifest in edge.manifests:
            count = hub.commit_count[manifest.segment]
            result.segments += 1
            result.committed_once += count == 1
            result.duplicated += count > 1
            result.lost += count == 0
            result.damaged += count > 0 and hub.committed_bytes(manifest.segment) != edge.files[manifest.segment]
        links = {m.segment.seq: ChainLink(m.sha256, m.prev_sha256) for s, m in hub.committed.items()
                 if str(s.table) == table}
        result.watermark_ok &= chain_status(links).watermark == SEGMENTS_PER_TABLE
        result.requests += stats.requests
        result.payload_bytes += sum(len(p) for p in payloads)
        result.bytes_sent += stats.bytes_sent
        result.faults.update({k: v for k, v in stats.faults.items() if k != Fault.NONE.value})
    return result


def run_demo(seed: int, echo=print) -> bool:
    rng = random.Random(seed)
    echo(f"Harbour protocol walk-through (seed {seed}): {len(SHIPS)} ships x {len(TABLES)} tables x "
         f"{SEGMENTS_PER_TABLE} segments, {FAULT_RATE:.0%} of requests hit a fault\n")
    header = f"{'ship':<10}{'segments':>9}{'once':>6}{'dup':>5}{'lost':>6}{'bad':>5}{'chain':>7}" \
             f"{'requests':>10}{'faults':>8}{'resent':>8}"
    echo(header)
    echo("-" * len(header))
    ok = True
    all_faults: Counter[str] = Counter()
    for ship in SHIPS:
        r = run_ship(ship, rng)
        resent = (r.bytes_sent - r.payload_bytes) / r.payload_bytes
        echo(f"{r.ship:<10}{r.segments:>9}{r.committed_once:>6}{r.duplicated:>5}{r.lost:>6}{r.damaged:>5}"
             f"{'ok' if r.watermark_ok else 'GAP':>7}{r.requests:>10}{sum(r.faults.values()):>8}{resent:>8.1%}")
        ok &= r.committed_once == r.segments and r.watermark_ok
        all_faults.update(r.faults)
    echo("\nfaults injected: " + ", ".join(f"{kind} x{n}" for kind, n in sorted(all_faults.items())))
    echo("\n" + ("PASS: every segment committed exactly once, intact, with a gap-free hash chain."
                 if ok else "FAIL: see the table above."))
    echo("(In-process protocol run; the fleet scenarios with real processes replace it as they land.)")
    return ok
