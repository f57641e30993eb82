"""``harbour hub run``: assemble the hub from its parts and serve until told to stop.

Start-up order matters for exactly-once: (1) take the data directory's lock, so two hubs never share
a ledger by accident (the processes of a cluster share one on purpose, each with its own ``--data``, and
serialise through the ledger's locks instead); (2) recover uploads (cut staging files back to their durable
offsets; verify and commit the ones that were complete); (3) reconcile the merger's open batches with the Delta
tables; only then (4) accept connections and start the merger thread.

This is the composition root: the only place that reads the real clock (``time.time``) and creates the
thread pool, and hands both to everything else.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import os
import signal
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from hub.http_shell.slow_clients import GuardedRunner
from sync_protocol.log_hygiene import REPEAT_KIND

from . import metrics as prometheus
from . import warehouse
from .datasets import DatasetStore
from .db import is_ledger_busy
from .downlink import Downlink
from .faults import CrashHook, no_crash
from .history import HISTORY_SAMPLE_SECONDS, FleetHistory
from .http_api import HubContext, build_app
from .layout import HubLayout
from .ledger import SqliteLedger
from .managed_settings import SettingsStore
from .merger import Merger
from .page_api import PageContext
from .registry import SiteRegistry
from .sessions import SessionStore
from .site_reports import SiteReportStore
from .staging import StagingArea
from .status import fleet_report
from .tls import ReloadingCertificate
from .uploads import UploadService

log = logging.getLogger("harbour.hub")

IO_THREADS = 32
"""Worker threads for blocking I/O (chunk writes, fsync, hashing, SQLite). Each in-flight chunk holds
one only while a write or fsync runs, so 32 keeps dozens of ships moving even while a few 512 MiB
segments are being hashed."""

EXPIRY_SWEEP_SECONDS = 3600.0
"""How often abandoned uploads are looked for; they expire after days, so hourly is plenty."""

DEFAULT_LISTEN = "127.0.0.1:8700"


class HubAlreadyRunning(Exception):
    pass


def _background_failed(error: Exception, what: str, retry_seconds: float) -> None:
    """Log a failed pass of a background loop: a busy or unreachable ledger is one warning a minute (it passes by
    itself, e.g. while a frozen process's transaction is ended), anything else a traceback."""
    if is_ledger_busy(error):
        log.warning("%s: the ledger is busy or out of reach (%s); retrying in %.0f s", what,
                    str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__,
                    retry_seconds, extra={REPEAT_KIND: f"background {what}"})
    else:
        log.error("%s; retrying in %.0f s", what, retry_seconds, exc_info=error)


def lock_data_dir(layout: HubLayout):
    handle = open(layout.lock_file, "a+")  # noqa: SIM115 -- held for the life of the process
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise HubAlreadyRunning(
            f"another `harbour hub run` is using {layout.root} (lock {layout.lock_file}); stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def ssl_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    return ReloadingCertificate(cert, key).context  # a renewed certificate takes effect without a restart


def run_hub(
    data: Path | HubLayout, host: str, port: int, *, tls: ssl.SSLContext | None = None,
    clock: Callable[[], float] = time.time, crash: CrashHook = no_crash,
    ready: Callable[[str], None] = lambda url: None,
) -> None:
    layout = (data if isinstance(data, HubLayout) else HubLayout.of(data)).made()
    warehouse.check_reachable(layout.warehouse_location)  # before taking uploads it could never merge
    lock = lock_data_dir(layout)
    database = layout.open_database()
    shared_locks = None
    if layout.ledger is not None:  # a cluster: uploads and merges are serialised through the ledger's locks
        from .postgres import SessionLocks

        shared_locks = SessionLocks(layout.ledger)
    executor = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="harbour-io")
    try:
        asyncio.run(_serve(layout, database, shared_locks, executor, host, port, tls, clock, crash, ready))
    finally:
        executor.shutdown(wait=True)
        if shared_locks is not None:
            shared_locks.close()
        database.close()
        lock.close()


async def _serve(layout, database, shared_locks, executor, host, port, tls, clock, crash, ready) -> None:
    loop = asyncio.get_running_loop()

    def run_in_thread(fn, *args):
        return loop.run_in_executor(executor, functools.partial(fn, *args))

    registry = SiteRegistry(database, clock)
    ledger = SqliteLedger(database, clock)
    staging = StagingArea(layout)
    merger = Merger(layout, ledger, staging, clock, crash=crash, shared_locks=shared_locks)
    # The merger reads what to merge from the ledger; the committed segment only tells it to look now.
    uploads = UploadService(ledger, staging, clock, run_in_thread, on_commit=lambda _segment: merger.wake(),
                            crash=crash, shared_locks=shared_locks)
    requests = prometheus.RequestMetrics()
    reports = SiteReportStore(database, clock)
    history = FleetHistory(database, clock)
    downlink = Downlink(DatasetStore(database, layout.datasets, clock), SettingsStore(database, clock))

    restored = await uploads.recover()
    finished, abandoned = await run_in_thread(merger.reconcile)
    log.info("recovered %d open uploads; merge batches settled: %d finished, %d abandoned",
             restored, finished, abandoned)
    merger.start()

    def fleet() -> dict:
        return fleet_report(ledger, registry, clock, reports, downlink)

    context = HubContext(
        registry=registry, uploads=uploads, run_in_thread=run_in_thread, clock=clock, fleet=fleet,
        metrics_text=prometheus.make_render(requests, uploads.stats, merger.stats, fleet),
        observe=requests.observe, rejected=requests.rejected, healthy=lambda: merger.alive, reports=reports,
        downlink=downlink,
    )
    page = PageContext(authenticate=registry.authenticate, operator_holds=registry.operator_holds, fleet=fleet,
                       history=history.series, sessions=SessionStore(database, clock), clock=clock,
                       run_in_thread=run_in_thread)
    runner = GuardedRunner(build_app(context, page), access_log=None, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    scheme = "https" if tls else "http"
    bound = runner.addresses[0] if runner.addresses else (host, port)
    url = f"{scheme}://{bound[0]}:{bound[1]}"
    log.info("hub listening on %s, data in %s, ledger %s", url, layout.root, database.describe())
    ready(url)

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def sweep() -> None:
        while True:
            try:
                dropped = await uploads.expire()
            except Exception as error:  # a sweep that failed must not end the sweeping; the next pass follows
                _background_failed(error, "could not expire abandoned uploads", EXPIRY_SWEEP_SECONDS)
            else:
                if dropped:
                    log.info("expired %d abandoned uploads", dropped)
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)

    async def sample_history() -> None:
        while True:
            try:
                await run_in_thread(lambda: history.record_report(fleet()))
            except Exception as error:  # a chart missing a point must never stop the hub; the next sample follows
                _background_failed(error, "could not record the fleet history", HISTORY_SAMPLE_SECONDS)
            await asyncio.sleep(HISTORY_SAMPLE_SECONDS)

    sweeper = asyncio.create_task(sweep())
    sampler = asyncio.create_task(sample_history())
    try:
        await stop.wait()
        log.info("stopping: finishing requests in flight")
    finally:
        sweeper.cancel()
        sampler.cancel()
        await runner.cleanup()
        await run_in_thread(merger.stop)
