"""What the CLI commands do once their options are parsed: serve the node, read status, render results.

Kept apart from ``cli.py`` so that ``harbour --help`` imports nothing heavy, and so that the serving
loop (signals, the "listening on" line tests and supervisors wait for) is in one place.

``edge run`` comes here holding DATA's lock and its bound socket (``startup.claim``, taken by the CLI
before this module's heavy imports); only then is the ledger opened and the crash recovery run.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
from aiohttp import web

from hub.http_shell.slow_clients import GuardedRunner
from sync_protocol import RemoteProtocolError, log_hygiene

from .config import EdgeConfig
from .datasets import DatasetStore
from .ledger import SegmentLedger
from .managed import SettingsKeeper
from .node import EdgeNode
from .quota import Usage
from .server import make_app
from .startup import Claim
from .status import build_status, offline_logs
from .sync.service import SyncService

log = logging.getLogger("edge_node")

LISTENING_LINE = "harbour edge listening on http://{host}:{port}"
"""Printed on stdout once the node serves: supervisors and tests wait for it (port 0 is resolved)."""


def run_node(config: EdgeConfig, claim: Claim, clock: Callable[[], float] | None = None) -> None:
    """Run the node on DATA and the socket ``claim`` holds (it is released when the node stops)."""
    try:
        _run_claimed(config, claim, clock)
    finally:
        claim.release()


def _run_claimed(config: EdgeConfig, claim: Claim, clock: Callable[[], float] | None) -> None:
    import time

    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log_hygiene.install(logging.getLogger().handlers, time.monotonic)  # no token in any log line
    try:
        keeper = SettingsKeeper(config)  # the managed settings last received, unless pinned on board
        node = EdgeNode(keeper.config, clock or time.time)
    except (RemoteProtocolError, ValueError, RuntimeError) as error:
        sys.exit(f"harbour edge run: {error}")
    node.recover()
    node.managed = keeper
    keeper.on_change = node.reconfigure
    if config.syncs:
        node.sync = SyncService(keeper.config, ledger=node.ledger, wal=node.wal, usage=node.usage, clock=node.clock,
                                rng=seeded_rng(config), datasets=node.datasets, settings=keeper)
    else:
        log.info("no --hub given: data is kept locally only")
    asyncio.run(_serve(node, claim))


def seeded_rng(config: EdgeConfig) -> random.Random:
    """The one source of randomness of the node (back-off jitter). Seeded from ``--seed`` and the site, so
    that the ships of one scenario, given one seed, still draw different numbers; without ``--seed`` from a
    fresh seed that is logged, so a run that went wrong can be replayed."""
    seed = config.seed if config.seed is not None else secrets.randbits(32)
    log.info("random seed %d (--seed %d replays this node's back-off)", seed, seed)
    return random.Random(f"{seed}:{config.site}")


async def _serve(node: EdgeNode, claim: Claim) -> None:
    runner = GuardedRunner(make_app(node, release_token=claim.holder.token or ""), access_log=None)
    await runner.setup()
    await web.SockSite(runner, claim.sock).start()
    host, port = claim.sock.getsockname()[:2]
    print(LISTENING_LINE.format(host=host, port=port), flush=True)
    claim.serving()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing writes in flight")
    await runner.cleanup()


def offline_status(data_dir: Path, clock: Callable[[], float]) -> dict[str, Any]:
    """Status read from disk (the node may be running or not)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ledger = SegmentLedger(data_dir, None, clock)
    try:
        logs = offline_logs(data_dir)
        total, pending, count = ledger.stored_bytes()
        usage = Usage(total, pending, count, sum(log.size for log in logs.values()))
        site = ledger.stored_site()
        report = build_status(str(site) if site else None, ledger, logs, usage, None, clock(),
                              "unknown (read from disk; ask the running node's /v1/status)")
        report["datasets"] = [held.to_dict() for held in DatasetStore(data_dir, clock).all_held()]
        return report
    finally:
        ledger.close()


def render_result(table: pa.Table, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(table.to_pylist(), default=str, indent=1) + "\n"
    if fmt == "csv":
        sink = io.BytesIO()
        pa_csv.write_csv(table, sink)
        return sink.getvalue().decode()
    cells = [[str(name) for name in table.column_names]]
    cells += [["NULL" if v is None else str(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max(len(row[i]) for row in cells) for i in range(table.num_columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    lines.append(f"({table.num_rows} row{'' if table.num_rows == 1 else 's'})")
    return "\n".join(lines) + "\n"
