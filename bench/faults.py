"""What one fault costs: Harbour's sync beside ``rsync --partial`` moving the same rows as one file.

At 10 Mbit/s (no added latency; the bytes do not depend on it), each method sends the same file: one
segment of telemetry rows as the edge seals it (Parquet zstd; rsync copies the very same bytes, so that
its delta matching cannot profit from the repeated pages of default pyarrow Parquet, see
research/rsync-http-baselines.md) and, when 40% of the payload has crossed the proxy, one of:

* **clean cut** -- every connection is reset (``LinkProxy.cut_all``); rsync is re-run 1 s later, as a
  cron job or a retry loop would; Harbour's agent reconnects by itself;
* **silent stall** -- the open connections stop forwarding without a FIN or RST (``BenchProxy.go_silent``,
  a half-open link), new connections work; rsync gives up after its ``--timeout`` and is re-run at once;
  Harbour's stall watchdog notices and resumes at the hub's durable offset.

Extra bytes = bytes on the wire (both directions) of the faulted transfer minus those of the same transfer
without a fault (the baseline, measured in the same run). Also: the extra seconds, and for rsync whether
the received file is still intact once the stale daemon receiver of a silent stall has ended.
"""

from __future__ import annotations

import asyncio
import filecmp
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from common import BenchResult, median, runs_for, telemetry
from harbour_sync import SITE, drain, manifests, write_segments
from peers import KILLED, RSYNC_TIMEOUT_SECONDS, BenchProxy, RsyncDaemon, rsync

from edge_node.sync.transport import STALL_SECONDS
from scenarios.link_proxy import LinkState
from scenarios.supervisor import Supervisor

NAME = "faults"
TITLE = "Cost of one clean cut and one silent stall: Harbour vs rsync --partial"
RATE_BPS = 10e6
ROWS = {True: 120_000, False: 400_000}
"""One file of ~4 MB (quick) or ~13 MB: a few seconds at 10 Mbit/s, like a segment sealed at sea."""
FAULT_AT = 0.4
RERUN_AFTER_CUT_SECONDS = 1.0
RSYNC_WATCHDOG_SECONDS = {True: 25.0, False: 60.0}
"""Measured: when the link goes silent with TCP back-pressure (no ACKs), rsync's --timeout never fires and the
client hangs (on a real link until TCP gives up, ~15 min with Linux defaults). The bench kills it after this
long, as an operator's watchdog would, and re-runs it; the figure counts these kills."""
FAULTS = ("none", "cut", "stall")


async def _with_fault(target_port: int, payload: int, fault: str,
                      transfer: Callable[[BenchProxy], Awaitable[None]]) -> tuple[float, int]:
    proxy = await BenchProxy("127.0.0.1", target_port, state=LinkState(rate_bps=RATE_BPS)).start()
    loop = asyncio.get_running_loop()

    async def inject() -> None:
        while proxy.stats.bytes_up < FAULT_AT * payload:
            await asyncio.sleep(0.01)
        if fault == "cut":
            proxy.cut_all()
        elif fault == "stall":
            proxy.go_silent()

    injector = asyncio.create_task(inject()) if fault != "none" else None
    started = loop.time()
    try:
        await transfer(proxy)
        return loop.time() - started, proxy.wire_bytes
    finally:
        if injector is not None:
            injector.cancel()
        await proxy.stop()  # also ends any connection left silent, as TCP eventually would


def _harbour(ctx: dict, fault: str, run: str) -> dict:
    queued = manifests(ctx["segments"], table=f"f_{fault}_{run}")

    async def transfer(proxy: BenchProxy) -> None:
        await drain(proxy.url, ctx["token"], ctx["segment_dir"], queued)
    seconds, wire = asyncio.run(_with_fault(ctx["hub"].port, ctx["segments"][0].size, fault, transfer))
    return {"seconds": seconds, "wire": wire}


def _rsync(ctx: dict, fault: str, run: str) -> dict:
    daemon: RsyncDaemon = ctx["rsync"]
    dest = f"{fault}-{run}"
    attempts = kills = 0

    async def transfer(proxy: BenchProxy) -> None:
        nonlocal attempts, kills
        while True:
            attempts += 1
            limit = ctx["watchdog"] if attempts == 1 else 600
            code = await rsync(ctx["parquet_dir"], proxy.port, dest, timeout=limit)
            kills += code == KILLED
            if code == 0:
                return
            if attempts >= 5:
                raise RuntimeError("rsync failed 5 times in a row")
            if fault == "cut":
                await asyncio.sleep(RERUN_AFTER_CUT_SECONDS)
    seconds, wire = asyncio.run(_with_fault(daemon.port, ctx["parquet_size"], fault, transfer))
    received = daemon.root / dest / "telemetry.parquet"
    intact_at_exit = filecmp.cmp(received, ctx["parquet_dir"] / "telemetry.parquet", shallow=False)
    asyncio.run(asyncio.sleep(2.0))  # the proxy is gone: a stale daemon receiver ends and may rename its partial
    intact_later = filecmp.cmp(received, ctx["parquet_dir"] / "telemetry.parquet", shallow=False)
    return {"seconds": seconds, "wire": wire, "attempts": attempts, "watchdog_kills": kills,
            "intact_at_exit": intact_at_exit, "intact_after_stale_receiver": intact_later}


def run(quick: bool) -> BenchResult:
    result = BenchResult(NAME, quick, TITLE)
    runs = runs_for(quick)
    table = telemetry(ROWS[quick], seed=7)
    print(f"{TITLE} ({runs} run(s) each, {table.num_rows} rows, 10 Mbit/s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="harbour-bench-faults-") as tmp, \
            Supervisor(Path(tmp) / "fleet") as fleet, RsyncDaemon(Path(tmp) / "rsyncd") as daemon:
        hub = fleet.hub().start()
        segment_dir = Path(tmp) / "segments"
        segments = write_segments(segment_dir, [table])
        parquet_dir = Path(tmp) / "parquet"
        parquet_dir.mkdir()
        data = (segment_dir / segments[0].path).read_bytes()  # the very bytes Harbour sends: transport vs transport
        (parquet_dir / "telemetry.parquet").write_bytes(data)
        ctx = {"hub": hub, "token": hub.add_site(SITE), "segments": segments, "segment_dir": segment_dir,
               "rsync": daemon, "watchdog": RSYNC_WATCHDOG_SECONDS[quick], "parquet_dir": parquet_dir,
               "parquet_size": len(data)}
        methods = {"harbour": _harbour, "rsync": _rsync}
        samples = {(m, f): [] for m in methods for f in FAULTS}
        for number in range(runs):
            for fault in FAULTS:
                for method, measure in methods.items():
                    samples[method, fault].append(measure(ctx, fault, str(number)))
        for method in methods:
            base_wire = median(s["wire"] for s in samples[method, "none"])
            base_seconds = median(s["seconds"] for s in samples[method, "none"])
            payload = ctx["segments"][0].size if method == "harbour" else len(data)
            for fault in FAULTS:
                got = samples[method, fault]
                figure = {"kind": "fault", "method": method, "fault": fault, "payload_bytes": payload,
                          "wire_bytes": median(s["wire"] for s in got),
                          "extra_bytes": median(s["wire"] for s in got) - base_wire,
                          "extra_seconds": median(s["seconds"] for s in got) - base_seconds,
                          "seconds": median(s["seconds"] for s in got),
                          "extra_samples": [s["wire"] - base_wire for s in got]}
                if method == "rsync":
                    figure["attempts"] = median(s["attempts"] for s in got)
                    figure["watchdog_kills"] = sum(s["watchdog_kills"] for s in got)
                    figure["intact_after_stale_receiver"] = sum(s["intact_after_stale_receiver"] for s in got)
                    figure["runs"] = len(got)
                result.add(**figure)
    result.note(f"fault injected when {FAULT_AT:.0%} of the payload had crossed the proxy; 10 Mbit/s, no added RTT.")
    result.note(f"Harbour notices a silent link after STALL_SECONDS = {STALL_SECONDS:.0f} s "
                f"(edge_node/sync/transport.py); rsync after --timeout={RSYNC_TIMEOUT_SECONDS}.")
    result.note("rsync runs with -a --partial; after a cut it is re-run 1 s later, after a stall at once. A "
                "watchdog kills an rsync that is still running RSYNC_WATCHDOG_SECONDS after it started "
                "(25 s quick, 60 s full): its --timeout does not fire on a silent link with back-pressure. "
                "'intact_after_stale_receiver' counts runs whose received file still equalled the source "
                "2 s after the proxy closed the silent connection (the stale daemon receiver then ends).")
    return result
