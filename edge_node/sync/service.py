"""The sync agent inside ``harbour edge run``: built from the node's settings (``EdgeConfig``), started and
stopped with the node, woken when a segment is sealed, and summarised for ``/v1/status``, the quota's
messages and the hub's fleet view (the edge reports its backlog to the hub every ``EdgeConfig.report_seconds``).

The report is also the downlink's channel (issue 17): it carries the datasets held and the settings run with
(``ReportedDownlink``), and the hub's answer carries the desired state, handed to the dataset downloader and
the managed settings (``edge_node.managed``), which change the running service through ``reconfigure``.

The service does not know the node: the composition root (``edge_node.runner``) hands it the settings, the
ledger, the write-ahead log and a usage callback, and hands the node this service as its ``SyncHooks``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sync_protocol import RemoteProtocolError
from sync_protocol.backoff import Rng
from sync_protocol.downlink import DesiredState, ReportedDownlink
from sync_protocol.units import format_rate, format_size

from ..config import EdgeConfig
from ..datasets import DatasetStore
from ..ledger import SegmentLedger, TableCounts
from ..managed import SettingsKeeper
from ..quota import Usage
from ..wal import WriteAheadLog
from .agent import SyncAgent
from .contact import TokenSource
from .downloader import DatasetDownloader
from .link import LinkMonitor, LinkPolicy, LinkState, RatePacer
from .transport import AiohttpHubTransport, LinkDown

log = logging.getLogger("edge_node.sync")

STATE_REFRESH_SECONDS = 1.0
"""How often the one-line link state quoted in status and 507 answers is refreshed."""

STARTING_STATE = "sync starting"
"""The one-line link state until the first refresh."""


class SyncService:
    def __init__(
        self, config: EdgeConfig, *, ledger: SegmentLedger, wal: WriteAheadLog, usage: Callable[[], Usage],
        clock: Callable[[], float], rng: Rng, datasets: DatasetStore | None = None,
        settings: SettingsKeeper | None = None,
    ) -> None:
        if not config.syncs:
            raise ValueError("the sync service needs the hub's URL and the site's token")
        self.config = config
        self.ledger = ledger
        self.wal = wal
        self.usage = usage
        self.rng = rng
        self.clock = clock
        # One line on what the link is doing, quoted in status and in 507 answers; kept fresh by the report loop.
        self.state_line = STARTING_STATE
        self.monitor = LinkMonitor(clock=clock, thin_below_bps=config.thin_below_bps)
        self.policy = LinkPolicy(thin_max_class=config.thin_max_class, metered=config.metered)
        self.agent: SyncAgent | None = None
        self.transport: AiohttpHubTransport | None = None
        self.pacer: RatePacer | None = None
        self.datasets = datasets
        self.settings = settings
        self.downloader: DatasetDownloader | None = None
        self._report_due = False
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Always a pacer (a no-op without a cap): a managed --max-upload-rate may set one while the node runs.
        self.pacer = RatePacer(self.config.max_upload_rate_bps, loop.time)
        assert self.config.hub_url and self.config.hub_token  # checked when made
        token = TokenSource(self.config.hub_token, self.config.hub_token_file)
        self.transport = AiohttpHubTransport(self.config.hub_url, token, pacer=self.pacer,
                                             ca_file=self.config.hub_ca,
                                             max_connections=self.config.max_in_flight + 3)  # + report, download
        self.agent = SyncAgent(self.ledger, self.config.data_dir, self.transport, self.monitor, self.policy,
                               self.clock, rng=self.rng, max_in_flight=self.config.max_in_flight)
        self._tasks = [asyncio.create_task(self.agent.run()), asyncio.create_task(self._report_loop())]
        if self.datasets is not None:
            self.downloader = DatasetDownloader(
                self.datasets, self.transport, self.monitor, policy=lambda: self.policy,
                priority_of=lambda name: self.config.dataset_priority_of(name),
                pending_upload_classes=self.ledger.pending_priorities, room_for=self._room_for, rng=self.rng,
                on_switch=self.report_soon, capped=lambda: bool(self.config.max_upload_rate_bps))
            await self.downloader.start()
            self._tasks.append(asyncio.create_task(self.downloader.run()))
        cap = format_rate(self.config.max_upload_rate_bps) if self.config.max_upload_rate_bps else "no cap"
        log.info("sync agent started: hub %s, upload %s, %s link policy", self.config.hub_url, cap,
                 "metered" if self.config.metered else "measured")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.transport is not None:
            await self.transport.close()

    def notify(self) -> None:
        if self.agent is not None:
            self.agent.notify()

    def reconfigure(self, config: EdgeConfig) -> None:
        """Run with ``config`` from now on (managed settings changed): link threshold, policy, upload cap."""
        self.config = config
        self.monitor.thin_below_bps = config.thin_below_bps
        self.policy = LinkPolicy(thin_max_class=config.thin_max_class, metered=config.metered)
        if self.agent is not None:
            self.agent.policy = self.policy
        if self.pacer is not None:
            self.pacer.set_rate(config.max_upload_rate_bps)

    def report_soon(self) -> None:
        """Report at the next refresh rather than at the next interval (a dataset was switched)."""
        self._report_due = True

    def _room_for(self, n_bytes: int) -> bool:
        return self.usage().total + n_bytes <= self.config.max_disk_bytes

    def reported_downlink(self) -> ReportedDownlink:
        outcome = self.settings.outcome if self.settings is not None else None
        return ReportedDownlink(
            datasets=self.downloader.held() if self.downloader is not None else {},
            settings_revision=outcome.revision if outcome else 0, applied=outcome.applied if outcome else {},
            pinned=outcome.pinned if outcome else {}, refused=outcome.refused if outcome else {})

    def seals_early(self, priority: int, class_pending: bool) -> bool:
        """Whether the node should seal a table of this class now rather than at the seal age/size."""
        return self.policy.seals_early(priority, self.monitor.state, class_pending, self.monitor.rtt_seconds)

    def describe(self, pending_bytes: int) -> dict[str, Any]:
        """The sync part of /v1/status: link, policy, what is in flight, and how long the backlog will take."""
        report = self.agent.describe() if self.agent else {"link": self.monitor.describe()}
        rate = self.monitor.rate_bytes
        report["hub"] = self.config.hub_url
        cap = self.config.max_upload_rate_bps
        report["upload_cap"] = format_rate(cap) if cap else None
        report["hub_problem"] = self.transport.contact.describe() if self.transport else None
        report["backlog_bytes"] = pending_bytes
        report["eta_seconds"] = eta_seconds(pending_bytes, rate, self.monitor.state)
        if self.downloader is not None:
            report["downloads"] = self.downloader.describe()
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
        """Keep the one-line sync state fresh (it is quoted in 507 answers), and tell the hub our
        backlog for its fleet view. Best effort: a down link or a hub without the endpoint costs a debug
        line; the next report carries fresh numbers anyway."""
        last_report = float("-inf")
        while True:
            self.state_line = self.summary()
            now = self.clock()
            if self.transport is not None and (now - last_report >= self.config.report_seconds or self._report_due):
                last_report, self._report_due = now, False
                await self._report()
            await asyncio.sleep(STATE_REFRESH_SECONDS)

    def _pending_rows(self, counts: list[TableCounts]) -> tuple[int, int | None]:
        """Rows the hub does not have yet (sealed segments and the write-ahead log, read on the event loop
        like /v1/status does) and the edge-clock time in ms of the oldest of them."""
        logs = [self.wal.pending_summary(table) for table in self.wal.tables()]
        rows = sum(c.pending_rows for c in counts) + sum(log.rows for log in logs)
        stamps = [c.oldest_pending_ms for c in counts if c.oldest_pending_ms is not None]
        stamps += [log.first_ms for log in logs if log.first_ms is not None]
        return rows, min(stamps) if stamps else None

    async def _report(self) -> None:
        assert self.transport is not None
        usage = self.usage()
        counts = await asyncio.to_thread(self.ledger.table_counts)
        rows, oldest_ms = self._pending_rows(counts)
        document = {"backlog_bytes": usage.pending_segment_bytes + usage.log_bytes,
                    "pending_segments": usage.pending_segments, "pending_rows": rows,
                    "oldest_pending_at": oldest_ms / 1000 if oldest_ms is not None else None,
                    "link": self.monitor.describe(), "parked_segments": len(self.ledger.parked()),
                    "hub_problem": self.transport.contact.describe(),
                    "reported_at": self.clock(), "downlink": self.reported_downlink().to_dict()}
        try:
            answer = await self.transport.report(str(self.config.site), document)
        except LinkDown as error:
            log.debug("backlog report not sent: %s", error)
            return
        if answer.status >= 300:
            log.debug("hub did not take the backlog report (%s): HTTP %d", format_size(document["backlog_bytes"]),
                      answer.status)
        elif answer.status == 200 and answer.body:
            self._desire(answer.body)

    def _desire(self, body: bytes) -> None:
        """The hub's answer to the report: the desired state (204, or an older hub's empty 200: no change)."""
        try:
            desired = DesiredState.from_json(body)
        except RemoteProtocolError as error:
            log.warning("ignoring the hub's answer to the report: %s", error)
            return
        if self.downloader is not None:
            self.downloader.desire(desired)
        if self.settings is not None and desired.settings is not None:
            self.settings.apply(desired.settings)


def eta_seconds(pending_bytes: int, rate: float | None, state: LinkState) -> float | None:
    """How long the backlog will take: 0 when there is none; None ("waiting for a link") while the link is down
    or not measured yet -- an ETA from the rate of a link that is gone was a promise nobody could keep."""
    if not pending_bytes:
        return 0
    if not rate or state is LinkState.DOWN:
        return None
    return round(pending_bytes / rate)
