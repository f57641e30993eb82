"""Fleet status with a long history: ``SqliteLedger.progress()`` and ``GET /v1/fleet`` with 100 vs 100,000
committed segments per site (issue 14, item 4: status costs time in the (site, table) pairs, gaps and chain
breaks, never in the segments ever committed).

The ledger is filled straight through the ``SqliteLedger`` API (``commit``, ``quarantine``, ``plan_batch`` +
``finish_batch``: the summary is kept exactly as in the hub), with SQLite's ``synchronous=OFF`` on the fill's own
connection, since durability of the fixture does not matter; no segment files are written. Per site two tables,
each with ``GAPS_PER_TABLE`` seqs that never arrive and ``QUARANTINED_PER_TABLE`` quarantined segments, spread over
its history, whatever its length (so the short and the long history differ in length only); every other segment
is merged (so a hub started on it has nothing to merge while it is measured).

Measured, on the same ledger files, in this process: ``progress()`` (read from the summary) and the whole fleet
report (``hub.status.fleet_report``: progress, quarantine list, rows merged today, merge lag); as the baseline in
the same run, both as they were before the summary, every figure recomputed from all segments
(``hub.ledger_summary.recompute_progress`` and ``recompute_rows_merged_since``, the old code). Then
``GET /v1/fleet`` answered by a real ``harbour hub run`` on each data directory (the report over HTTP, as JSON),
against the same hub with 100 segments per site. Medians of the per-run medians.
"""

from __future__ import annotations

import http.client
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import BenchResult, median, runs_for

from hub.db import Database
from hub.layout import HubLayout
from hub.ledger import SqliteLedger
from hub.ledger_summary import recompute_progress, recompute_rows_merged_since
from hub.registry import SiteRegistry
from hub.status import fleet_report
from scenarios.supervisor import Supervisor
from sync_protocol import Manifest, SegmentId
from sync_protocol.identifiers import TableName
from sync_protocol.limits import GENESIS_DIGEST

NAME = "fleet_status"
TITLE = "Fleet status with a long history: progress() and /v1/fleet, 100 vs 100,000 segments per site"
SITES = 4
TABLES = ("telemetry", "events")
HISTORIES = {True: (100, 10_000), False: (100, 100_000)}
"""Committed segments per site (split over ``TABLES``): a few minutes of a ship's life, and about a month of one
table sealing a segment a minute."""
GAPS_PER_TABLE = 5
QUARANTINED_PER_TABLE = 2
FILL_BATCH = 10_000
"""Segments per merge batch in the fill (the merger takes 512; larger batches only make the fill quicker)."""
CALLS = {"progress": 50, "report": 50, "recompute": 5, "report_recompute": 5, "fleet": 20}
"""Calls timed per run: the recomputation at 100,000 segments per site takes seconds a call."""
FINGERPRINT = "f" * 64


def fill(data_dir: Path, per_site: int) -> tuple[str, float]:
    """A hub data directory whose ledger holds ``per_site`` segments for each of ``SITES`` sites; returns an
    operator token and the seconds the fill took."""
    started = time.perf_counter()
    database = Database(HubLayout.create(data_dir).database)
    try:
        database.db.execute("PRAGMA synchronous = OFF")  # a fixture: see the module docstring
        registry = SiteRegistry(database, time.time)
        ledger = SqliteLedger(database, time.time)
        sites = [f"ship-{number:02d}" for number in range(SITES)]
        for site in sites:
            registry.add_site(site)
            for table in TABLES:
                commit_history(ledger, site, table, per_site // len(TABLES))
        for table in TABLES:
            while waiting := ledger.pending(TableName(table), FILL_BATCH):
                batch = ledger.plan_batch(TableName(table), [w.segment for w in waiting])
                ledger.finish_batch(batch.batch_id, 0, time.time())
        return registry.add_operator("bench"), time.perf_counter() - started
    finally:
        database.close()


def commit_history(ledger: SqliteLedger, site: str, table: str, segments: int) -> None:
    missing = {segments * (n + 1) // (GAPS_PER_TABLE + 1) for n in range(GAPS_PER_TABLE)}
    set_aside = {segments * (2 * n + 1) // (2 * QUARANTINED_PER_TABLE) + 1 for n in range(QUARANTINED_PER_TABLE)}
    for seq in range(1, segments + 1):
        if seq in missing:
            continue
        prev = GENESIS_DIGEST if seq == 1 else f"{seq - 1:064x}"
        manifest = Manifest(SegmentId.of(site, table, seq), 100, 4096, f"{seq:064x}", FINGERPRINT, prev, 2, 0)
        ledger.commit(manifest, time.time())
        if seq in set_aside:
            ledger.quarantine(manifest.segment, "bench: set aside", time.time())


def per_call_ms(call: Callable[[], object], calls: int) -> float:
    """The median time of ``calls`` calls, in ms, after one untimed call (caches warm)."""
    call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


class RecomputingLedger(SqliteLedger):
    """The ledger as status read it before the summary: every figure recomputed from all the segments."""

    def progress(self):
        return recompute_progress(self._database.db)

    def rows_merged_since(self, since: float) -> dict[str, int]:
        return recompute_rows_merged_since(self._database.db, since)


def time_ledger(data_dir: Path) -> dict:
    database = Database(HubLayout.create(data_dir).database)
    try:
        ledger, old = SqliteLedger(database, time.time), RecomputingLedger(database, time.time)
        registry = SiteRegistry(database, time.time)
        now = time.time()
        same = fleet_report(ledger, registry, lambda: now) == fleet_report(old, registry, lambda: now)
        return {"progress": per_call_ms(ledger.progress, CALLS["progress"]),
                "recompute": per_call_ms(old.progress, CALLS["recompute"]),
                "report": per_call_ms(lambda: fleet_report(ledger, registry, time.time), CALLS["report"]),
                "report_recompute": per_call_ms(lambda: fleet_report(old, registry, time.time),
                                                CALLS["report_recompute"]),
                "same": same and ledger.progress() == old.progress(), "pairs": len(ledger.progress()),
                "gaps": sum(len(p.chain.gaps) for p in ledger.progress())}
    finally:
        database.close()


def time_fleet_api(supervisor: Supervisor, name: str, operator: str) -> float:
    hub = supervisor.hub(name, extra=("--log-level", "warning")).start()
    connection = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=120)

    def get() -> None:
        connection.request("GET", "/v1/fleet", headers={"Authorization": f"Bearer {operator}"})
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"/v1/fleet answered {answer.status}: {body[:300]!r}")

    try:
        return per_call_ms(get, CALLS["fleet"])
    finally:
        connection.close()
        hub.stop()


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs = runs_for(quick)
    histories = HISTORIES[quick]
    print(f"{TITLE} ({runs} run(s), {SITES} sites x {len(TABLES)} tables)", flush=True)
    with tempfile.TemporaryDirectory(prefix="harbour-bench-fleet-") as tmp, Supervisor(Path(tmp)) as supervisor:
        operators, fill_seconds = {}, {}
        for per_site in histories:
            operators[per_site], fill_seconds[per_site] = fill(Path(tmp) / f"hub-{per_site}", per_site)
            print(f"  filled {per_site:,} segments per site in {fill_seconds[per_site]:.1f} s", flush=True)
        samples: dict[int, list[dict]] = {per_site: [] for per_site in histories}
        for _ in range(runs):
            for per_site in histories:
                timed = time_ledger(Path(tmp) / f"hub-{per_site}")
                timed["fleet"] = time_fleet_api(supervisor, f"hub-{per_site}", operators[per_site])
                samples[per_site].append(timed)
        small = histories[0]
        for per_site in histories:
            got = samples[per_site]
            ms = {key: median(s[key] for s in got) for key in ("progress", "recompute", "report", "report_recompute",
                                                                "fleet")}
            growth = {key: ms[key] / median(s[key] for s in samples[small]) for key in ms}
            result.add(
                kind="status", segments_per_site=per_site, sites=SITES, table_pairs=got[0]["pairs"],
                gaps=got[0]["gaps"], progress_ms=ms["progress"], progress_vs_100=growth["progress"],
                recomputed_ms=ms["recompute"], recomputed_vs_100=growth["recompute"],
                report_ms=ms["report"], report_vs_100=growth["report"],
                report_recomputed_ms=ms["report_recompute"], report_recomputed_vs_100=growth["report_recompute"],
                recomputed_over_summary=ms["report_recompute"] / ms["report"],
                v1_fleet_ms=ms["fleet"], v1_fleet_vs_100=growth["fleet"],
                same_output="yes" if all(s["same"] for s in got) else "NO",
                samples=[round(s["report"], 4) for s in got],
                extra_samples=[round(s["report_recompute"], 2) for s in got],
            )
    result.note(f"Per site {len(TABLES)} tables, each with {GAPS_PER_TABLE} missing seqs and "
                f"{QUARANTINED_PER_TABLE} quarantined segments, the rest merged; filled through the SqliteLedger "
                "API with synchronous=OFF in "
                + ", ".join(f"{fill_seconds[n]:.0f} s ({n:,}/site)" for n in histories)
                + ". progress_ms: SqliteLedger.progress() from the summary; report_ms: the whole fleet report "
                "(hub.status.fleet_report) in process; *_recomputed_ms: the same, every figure recomputed from all "
                "segments as before the summary (same run, same files, same output); *_vs_100: against the ledger "
                "with 100 segments per site. Per run the median of "
                f"{CALLS['progress']} calls ({CALLS['recompute']} of a recomputation); v1_fleet_ms: median of "
                f"{CALLS['fleet']} GET /v1/fleet on one keep-alive connection to `harbour hub run` on that data "
                "directory (HTTP and JSON included).")
    return result
