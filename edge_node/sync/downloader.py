"""The downlink's downloader: fetches the reference datasets the hub offers, into the on-board store.

Driven by the report answer: each answer's ``DesiredState`` goes to ``desire``, which moves every dataset's
``DatasetFetch`` (``sync_protocol.dataset_states``) and wakes the loop. The loop fetches one version at a time,
most urgent dataset first, with ``Range`` from the durable offset (``edge_node.datasets``), checks its sha256
and switches. Scheduling with the uplink, by priority class (``--priority offers=2``; a dataset nobody named
has ``sync_protocol.downlink.DEFAULT_DATASET_PRIORITY``):

* the link policy decides which classes may go, for downloads as for uploads (thin link or metered: only
  classes up to ``--thin-link-max-class``); a held-back download waits for a good link;
* the bytes go through the upload cap's token bucket too (``transport.download``): with a cap set, that bucket
  is what uploads and downloads share, so while an upload of a *more urgent* class waits, a download pauses at
  its next fsync (the durable offset is kept, nothing is fetched twice) and resumes when that class is sent.
  Without a cap they do not compete (a download uses the link's other direction) and both go at once: a
  steady trickle of class-1 telemetry must not starve a price list.

A newer offer supersedes a fetch in progress: its request stops at the next piece and its partial is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sync_protocol.backoff import Backoff, Rng
from sync_protocol.dataset_states import Action, DatasetFetch, DatasetState
from sync_protocol.downlink import DatasetOffer, DesiredState

from ..datasets import DatasetStore, PartialDownload
from .link import LinkMonitor, LinkPolicy
from .transport import HubTransport, LinkDown

log = logging.getLogger("edge_node.sync")

IDLE_POLL_SECONDS = 1.0
"""With nothing allowed to fetch, look again this often (a report answer or a link change may allow it)."""

ROUND_FAILURE_PAUSE_SECONDS = 5.0
"""Pause after a round failed unexpectedly (a disk error), before the next one."""

DOWNLOAD_BACKOFF = Backoff(first_seconds=2.0, cap_seconds=60.0, free_failures=1)
"""After a cut, retry at once once (a single cut is best answered by reconnecting), then 2 s, 4 s, ... 60 s."""


class _Stop(Exception):
    """Raised by the sink to end a request early (superseded, yielding to an urgent upload, link policy)."""


@dataclass
class DownloadCounters:
    bytes_received: int = 0  # body bytes that reached the store, over every request since start
    requests: int = 0
    switches: int = 0
    failures_in_a_row: int = 0
    last_error: str = ""


class _Sink:
    """The transport's ``DownloadSink`` over a ``PartialDownload``: fsync in a worker thread every
    ``FSYNC_EVERY_BYTES``, and stop when the downloader says so."""

    def __init__(self, downloader: DatasetDownloader, fetch: DatasetFetch, offer: DatasetOffer,
                 partial: PartialDownload) -> None:
        self.downloader, self.fetch, self.offer, self.partial = downloader, fetch, offer, partial

    def begin(self, at: int) -> None:
        self.partial.open(at)
        if at < self.fetch.offset:  # the hub sent more than we asked (a 200): the progress starts again
            self.fetch.offset = at

    async def write(self, data: bytes) -> None:
        if self.fetch.target is not self.offer:
            raise _Stop("superseded")
        due = self.partial.write(data)
        self.downloader.counters.bytes_received += len(data)
        if due:
            self.fetch.received(await asyncio.to_thread(self.partial.checkpoint))
            reason = await self.downloader.reason_to_stop(self.offer.name)
            if reason:
                raise _Stop(reason)


class DatasetDownloader:
    def __init__(
        self, store: DatasetStore, transport: HubTransport, monitor: LinkMonitor, *,
        policy: Callable[[], LinkPolicy], priority_of: Callable[[str], int],
        pending_upload_classes: Callable[[], set[int]], room_for: Callable[[int], bool], rng: Rng,
        on_switch: Callable[[], None] = lambda: None, capped: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.transport = transport
        self.monitor = monitor
        self.policy = policy  # called each time: managed settings may change it while the node runs
        self.priority_of = priority_of
        self.pending_upload_classes = pending_upload_classes  # blocking (the ledger): called in a thread
        self.room_for = room_for  # whether the disk quota has room for this many more bytes
        self.rng = rng
        self.capped = capped  # whether an upload cap is set: then downloads share it, and yield to urgent uploads
        self.on_switch = on_switch  # report soon: the hub's view of the ship shows the new version
        self._current: str | None = None  # the dataset a request is running for
        self.counters = DownloadCounters()
        self.fetches: dict[str, DatasetFetch] = {}
        self.waiting: dict[str, str] = {}  # dataset -> why its fetch waits (status)
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self.fetches = await asyncio.to_thread(self.store.recover)

    def desire(self, desired: DesiredState) -> None:
        """The hub's answer to a report: move each dataset towards the newest version offered."""
        for offer in desired.datasets:
            fetch = self.fetches.setdefault(offer.name, DatasetFetch(offer.name))
            action = fetch.offer(offer)
            if action is Action.DISCARD_PARTIAL and not self._busy_with(offer.name):
                self.store.discard_partial(offer.name)  # a running fetch drops its own when it sees the change
            if action is not Action.NOTHING:
                log.info("dataset %s: version %d offered (%d bytes)", offer.name, offer.version, offer.size)
                self._wake.set()

    def _busy_with(self, name: str) -> bool:
        return self._current == name

    def held(self) -> dict[str, int]:
        """Versions on board, for the report."""
        return {name: fetch.held.version for name, fetch in self.fetches.items() if fetch.held is not None}

    def describe(self) -> list[dict[str, Any]]:
        rows = []
        for name, fetch in sorted(self.fetches.items()):
            target, held = fetch.target, fetch.held
            rows.append({"name": name, "state": fetch.state.value, "version": held.version if held else None,
                         "fetching": target.version if target else None, "offset": fetch.offset if target else None,
                         "size": target.size if target else None, "priority": self.priority_of(name),
                         "waiting": self.waiting.get(name)})
        return rows

    async def reason_to_stop(self, name: str) -> str | None:
        """Why a fetch of ``name`` may not go now (None: it may): the link policy, or (under a cap) an urgent upload."""
        priority = self.priority_of(name)
        if not self.policy().allows(priority, self.monitor.measured_state):
            return f"class {priority} is held back on a {self.monitor.measured_state.value} link"
        if not self.capped():
            return None
        urgent = [c for c in await asyncio.to_thread(self.pending_upload_classes) if c < priority]
        if urgent:
            return f"uploads of class {min(urgent)} go first"
        return None

    async def run(self) -> None:
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a disk error, or a bug: the downlink must not stop for good
                log.exception("dataset download round failed; trying again in %.0f s", ROUND_FAILURE_PAUSE_SECONDS)
                await asyncio.sleep(ROUND_FAILURE_PAUSE_SECONDS)

    async def _round(self) -> None:
        """Fetch (a request's worth of) the most urgent dataset that may go, or wait for a reason to look again."""
        fetched = False
        for fetch in sorted(self.fetches.values(), key=lambda f: (self.priority_of(f.name), f.name)):
            if not (fetch.wants_bytes or fetch.state is DatasetState.VERIFYING):
                continue
            reason = await self.reason_to_stop(fetch.name)
            if reason is None and fetch.target is not None and not self.room_for(fetch.target.size - fetch.offset):
                reason = "the disk quota has no room for it"
            if reason:
                self.waiting[fetch.name] = reason
                continue
            self.waiting.pop(fetch.name, None)
            fetched = await self._fetch(fetch)
            break  # priorities may have changed meanwhile: start from the most urgent again
        if not fetched:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_SECONDS)

    async def _fetch(self, fetch: DatasetFetch) -> bool:
        """One request for the target (or its verification); False when the loop should idle before the next."""
        offer = fetch.target
        assert offer is not None
        if fetch.state is not DatasetState.VERIFYING:
            at = fetch.start()
        if fetch.state is DatasetState.VERIFYING:
            return await self._verify(fetch, offer)
        self._current = offer.name
        partial = await asyncio.to_thread(self.store.partial, offer, at)
        sink = _Sink(self, fetch, offer, partial)
        answer, cut = None, None
        try:
            self.counters.requests += 1
            answer = await self.transport.download(offer.path, at, sink, etag=offer.etag)
        except _Stop as stop:
            self.waiting[offer.name] = str(stop)
        except LinkDown as error:
            cut = str(error)
        finally:
            durable = await asyncio.to_thread(partial.checkpoint)  # whatever arrived counts, cut or not
            partial.close()
            self._current = None  # only now may a newer offer discard the partial itself
            if fetch.target is not offer:  # superseded meanwhile: its bytes are of no use
                await asyncio.to_thread(self.store.discard_partial, offer.name)
            elif durable > fetch.offset:
                fetch.received(durable)
        if durable > at:
            self.counters.failures_in_a_row = 0  # back-off counts failures since the last progress
        if cut is not None:
            return await self._failed(offer, cut)
        if answer is None or fetch.target is not offer:
            return True
        if answer.status in (404, 410):
            log.warning("dataset %s v%d: the hub answered %d (%s); waiting for its next answer", offer.name,
                        offer.version, answer.status, "pruned" if answer.status == 410 else "not offered")
            fetch.gone()
            await asyncio.to_thread(self.store.discard_partial, offer.name)
            return True
        if answer.status == 416:
            log.warning("dataset %s v%d: the hub cannot resume at byte %d (416); fetching it from byte 0",
                        offer.name, offer.version, at)
            fetch.range_refused()
            await asyncio.to_thread(self.store.discard_partial, offer.name)
            return True
        if answer.status not in (200, 206):
            return await self._failed(offer, f"HTTP {answer.status}: {answer.body[:200].decode(errors='replace')}")
        if answer.headers.get("ETag") not in (None, offer.etag):
            log.warning("dataset %s v%d: the hub sent ETag %s, not %s; fetching it again", offer.name,
                        offer.version, answer.headers.get("ETag"), offer.etag)
        self.counters.failures_in_a_row = 0
        if fetch.state is DatasetState.VERIFYING:
            return await self._verify(fetch, offer)
        return True

    async def _verify(self, fetch: DatasetFetch, offer: DatasetOffer) -> bool:
        """Check the complete partial's sha256, then switch to it; readers see the new version only after."""
        self._current = offer.name  # a newer offer meanwhile leaves the partial to us
        try:
            sha256 = offer.sha256 if offer.size == 0 else await asyncio.to_thread(self.store.partial_sha256,
                                                                                  offer.name)
            if fetch.target is not offer:  # superseded while hashing
                await asyncio.to_thread(self.store.discard_partial, offer.name)
                return True
            if sha256 != offer.sha256:
                fetch.verified(sha256)
                log.error("dataset %s v%d: sha256 %s does not match the offer's %s; fetching it again from byte 0",
                          offer.name, offer.version, sha256, offer.sha256)
                await asyncio.to_thread(self.store.discard_partial, offer.name)
                return await self._failed(offer, "sha256 mismatch")
            held = await asyncio.to_thread(self.store.switch, offer)
        finally:
            self._current = None
        if fetch.target is offer:
            fetch.verified(sha256)
        else:  # a newer offer came during the switch: the switch stands, the newer one is fetched next
            fetch.held = offer
        self.counters.switches += 1
        self.on_switch()
        log.info("dataset %s: switched to version %d (%d bytes, %s rows)", offer.name, held.version, held.size,
                 held.rows)
        return True

    async def _failed(self, offer: DatasetOffer, reason: str) -> bool:
        self.counters.failures_in_a_row += 1
        self.counters.last_error = reason
        self.waiting[offer.name] = reason
        pause = DOWNLOAD_BACKOFF.seconds(self.counters.failures_in_a_row, self.rng)
        log.info("dataset %s v%d: %s; retrying in %.1f s", offer.name, offer.version, reason, pause)
        await asyncio.sleep(pause)
        return True  # the back-off was the wait: look again at once
