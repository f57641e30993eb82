"""The sync agent inside ``harbour edge run``: built from the run options, started and stopped with the
node, woken when a segment is sealed, and summarised for ``/v1/status``, the quota's messages and the
hub's fleet view (the edge reports its backlog to the hub every ``REPORT_SECONDS``)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync_protocol.units import format_rate, format_size

from .agent import DEFAULT_MAX_IN_FLIGHT, SyncAgent
from .link import DEFAULT_THIN_BELOW_BPS, DEFAULT_THIN_MAX_CLASS, LinkMonitor, LinkPolicy, RatePacer
from .transport import AiohttpHubTransport, LinkDown

if TYPE_CHECKING:
    from edge_node.ledger import TableCounts
    from edge_node.node import EdgeNode

log = logging.getLogger("edge_node.sync")

STATE_REFRESH_SECONDS = 1.0
"""How often the one-line link state quoted in status and 507 answers is refreshed."""

REPORT_SECONDS = 30.0
"""How often the edge tells the hub its backlog: fresh enough for a morning look at the fleet page, a
few hundred bytes each time, so negligible even on a metered link."""


@dataclass(frozen=True)
class SyncOptions:
    hub_url: str
    token: str
    ca_file: Path | None = None
    max_upload_rate_bps: float | None = None
    metered: bool = False
    thin_below_bps: float = DEFAULT_THIN_BELOW_BPS
    thin_max_class: int = DEFAULT_THIN_MAX_CLASS
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT


class SyncService:
    def __init__(self, node: EdgeNode, options: SyncOptions) -> None:
        self.node = node
        self.options = options
        self.monitor = LinkMonitor(clock=node.clock, thin_below_bps=options.thin_below_bps)
        self.policy = LinkPolicy(thin_max_class=options.thin_max_class, metered=options.metered)
        self.agent: SyncAgent | None = None
        self.transport: AiohttpHubTransport | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        pacer = RatePacer(self.options.max_upload_rate_bps, loop.time) if self.options.max_upload_rate_bps else None
        self.transport = AiohttpHubTransport(self.options.hub_url, self.options.token, pacer=pacer,
                                             ca_file=self.options.ca_file,
                                             max_connections=self.options.max_in_flight + 2)  # + the report
        self.agent = SyncAgent(self.node.ledger, self.node.data_dir, self.transport, self.monitor, self.policy,
                               self.node.clock, max_in_flight=self.options.max_in_flight)
        self._tasks = [asyncio.create_task(self.agent.run()), asyncio.create_task(self._report_loop())]
        cap = format_rate(self.options.max_upload_rate_bps) if self.options.max_upload_rate_bps else "no cap"
        log.info("sync agent started: hub %s, upload %s, %s link policy", self.options.hub_url, cap,
                 "metered" if self.options.metered else "measured")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.transport is not None:
            await self.transport.close()

    def notify(self) -> None:
        if self.agent is not None:
            self.agent.notify()

    def seals_early(self, priority: int, class_pending: bool) -> bool:
        """Whether the node should seal a table of this class now rather than at the seal age/size."""
        return self.policy.seals_early(priority, self.monitor.state, class_pending, self.monitor.rtt_seconds)

    def describe(self, pending_bytes: int) -> dict[str, Any]:
        """The sync part of /v1/status: link, policy, what is in flight, and how long the backlog will take."""
        report = self.agent.describe() if self.agent else {"link": self.monitor.describe()}
        rate = self.monitor.rate_bytes
        report["hub"] = self.options.hub_url
        cap = self.options.max_upload_rate_bps
        report["upload_cap"] = format_rate(cap) if cap else None
        report["backlog_bytes"] = pending_bytes
        report["eta_seconds"] = round(pending_bytes / rate) if rate and pending_bytes else (0 if not pending_bytes
                                                                                            else None)
        return report

    def summary(self) -> str:
        """One line for quota errors and the text status: what the link is doing."""
        link = self.monitor.describe()
        parts = [f"link {link['state']}"]
        if link["measured_rate"]:
            parts.append(f"measured {link['measured_rate']}")
        if link["last_error"] and link["state"] == "down":
            parts.append(f"last error: {link['last_error']}")
        return ", ".join(parts)

    async def _report_loop(self) -> None:
        """Keep the node's one-line sync state fresh (it is quoted in 507 answers), and tell the hub our
        backlog for its fleet view. Best effort: a down link or a hub without the endpoint costs a debug
        line; the next report carries fresh numbers anyway."""
        last_report = float("-inf")
        while True:
            self.node.sync_state = self.summary()
            now = self.node.clock()
            if self.transport is not None and now - last_report >= REPORT_SECONDS:
                last_report = now
                await self._report()
            await asyncio.sleep(STATE_REFRESH_SECONDS)

    def _pending_rows(self, counts: list[TableCounts]) -> tuple[int, int | None]:
        """Rows the hub does not have yet (sealed segments and the write-ahead log, read on the event loop
        like /v1/status does) and the edge-clock time in ms of the oldest of them."""
        logs = [self.node.wal.pending_summary(table) for table in self.node.wal.tables()]
        rows = sum(c.pending_rows for c in counts) + sum(log.rows for log in logs)
        stamps = [c.oldest_pending_ms for c in counts if c.oldest_pending_ms is not None]
        stamps += [log.first_ms for log in logs if log.first_ms is not None]
        return rows, min(stamps) if stamps else None

    async def _report(self) -> None:
        assert self.transport is not None
        usage = self.node.usage()
        counts = await asyncio.to_thread(self.node.ledger.table_counts)
        rows, oldest_ms = self._pending_rows(counts)
        document = {"backlog_bytes": usage.pending_segment_bytes + usage.log_bytes,
                    "pending_segments": usage.pending_segments, "pending_rows": rows,
                    "oldest_pending_at": oldest_ms / 1000 if oldest_ms is not None else None,
                    "link": self.monitor.describe(), "parked_segments": len(self.node.ledger.parked()),
                    "reported_at": self.node.clock()}
        try:
            answer = await self.transport.report(str(self.node.config.site), document)
        except LinkDown as error:
            log.debug("backlog report not sent: %s", error)
            return
        if answer.status >= 300:
            log.debug("hub did not take the backlog report (%s): HTTP %d", format_size(document["backlog_bytes"]),
                      answer.status)
