"""The dataset downloader against a real (tiny) hub: resumable, verified, superseded, scheduled with the uplink."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from edge_node.datasets import FSYNC_EVERY_BYTES, DatasetStore
from edge_node.sync.downloader import DatasetDownloader
from edge_node.sync.link import LinkMonitor, LinkPolicy
from edge_node.sync.transport import BODY_SLICE_BYTES, AiohttpHubTransport
from sync_protocol.dataset_states import DatasetState
from sync_protocol.downlink import DEFAULT_DATASET_PRIORITY, DesiredState


class Harness:
    def __init__(self, hub, data_dir, policy=None, priorities=None, pending=None, room=True, capped=False):
        self.hub = hub
        self.store = DatasetStore(data_dir, time.time)
        self.transport = AiohttpHubTransport(hub.url, hub.token, stall_seconds=5)
        self.policy = policy or LinkPolicy()
        self.pending: set[int] = pending if pending is not None else set()
        self.switched = 0
        self.downloader = DatasetDownloader(
            self.store, self.transport, LinkMonitor(clock=time.monotonic), policy=lambda: self.policy,
            priority_of=lambda name: (priorities or {}).get(name, DEFAULT_DATASET_PRIORITY),
            pending_upload_classes=lambda: self.pending, room_for=lambda n: room, rng=random.Random(1),
            on_switch=self._switched, capped=lambda: capped)
        self.task: asyncio.Task | None = None

    def _switched(self) -> None:
        self.switched += 1

    async def __aenter__(self) -> Harness:
        await self.downloader.start()
        self.task = asyncio.create_task(self.downloader.run())
        return self

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.transport.close()

    def answer(self) -> None:
        """What a report answer does: hand the hub's desired state to the downloader."""
        self.downloader.desire(DesiredState.from_json(
            DesiredState(tuple(self.hub.offer(n, v) for n, v in self.hub.offered.items())).to_json()))

    async def until(self, condition, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out; downloads: {self.downloader.describe()}"
            await asyncio.sleep(0.02)

    def held(self, name: str = "offers") -> int | None:
        return self.downloader.held().get(name)

    def current_bytes(self, name: str = "offers") -> bytes:
        held, handle = self.store.open_current(name)
        with handle:
            return handle.read()


async def test_a_published_version_arrives_byte_identical_and_is_reported(downlink_hub, dataset_bytes, tmp_path):
    data = dataset_bytes(1, 50_000)
    downlink_hub.publish("offers", data)
    async with Harness(downlink_hub, tmp_path) as ship:
        ship.answer()
        await ship.until(lambda: ship.held() == 1)
        assert ship.current_bytes() == data and ship.switched == 1
        assert ship.store.held("offers").rows == 50_000
        assert downlink_hub.served_bytes == len(data)


@pytest.mark.guarantee("G3")
async def test_a_link_that_cuts_every_100_kb_costs_at_most_one_fsync_interval_per_cut(downlink_hub, dataset_bytes,
                                                                                      tmp_path):
    data = dataset_bytes(1, 100_000)
    downlink_hub.publish("offers", data)
    downlink_hub.cut_after = 100 * 1024
    async with Harness(downlink_hub, tmp_path) as ship:
        ship.answer()
        await ship.until(lambda: ship.held() == 1, timeout=60)
        assert ship.current_bytes() == data
    cuts = len(downlink_hub.requests) - 1
    assert cuts >= len(data) // (100 * 1024) - 1
    assert downlink_hub.served_bytes - len(data) <= cuts * BODY_SLICE_BYTES  # everything received was kept
    assert [first for *_, first in downlink_hub.requests] == sorted(first for *_, first in downlink_hub.requests)


async def test_a_newer_version_supersedes_a_download_in_progress(downlink_hub, dataset_bytes, tmp_path):
    downlink_hub.publish("offers", dataset_bytes(1, 100_000))
    downlink_hub.bytes_per_second = 1_000_000
    async with Harness(downlink_hub, tmp_path) as ship:
        ship.answer()
        await ship.until(lambda: ship.downloader.fetches["offers"].offset >= FSYNC_EVERY_BYTES)
        v2 = dataset_bytes(2, 1000)
        downlink_hub.publish("offers", v2)
        ship.answer()
        await ship.until(lambda: ship.held() == 2)
        assert ship.current_bytes() == v2 and ship.switched == 1  # version 1 was never switched to
        assert not (ship.store.root / "offers" / "v1.arrows").exists()


async def test_a_ship_offline_through_versions_2_and_3_fetches_only_3(downlink_hub, dataset_bytes, tmp_path):
    downlink_hub.publish("offers", dataset_bytes(1, 1000))
    async with Harness(downlink_hub, tmp_path) as ship:
        ship.answer()
        await ship.until(lambda: ship.held() == 1)
    downlink_hub.publish("offers", dataset_bytes(2, 1000))  # the ship is offline meanwhile
    v3 = dataset_bytes(3, 1000)
    downlink_hub.publish("offers", v3)
    async with Harness(downlink_hub, tmp_path) as ship:  # back online, restarted
        assert ship.held() == 1
        ship.answer()
        await ship.until(lambda: ship.held() == 3)
        assert ship.current_bytes() == v3
    assert [version for _, version, _ in downlink_hub.requests] == [1, 3]


@pytest.mark.guarantee("G3")
async def test_a_restart_mid_download_resumes_at_the_durable_offset(downlink_hub, dataset_bytes, tmp_path):
    data = dataset_bytes(1, 100_000)
    downlink_hub.publish("offers", data)
    downlink_hub.bytes_per_second = 2_000_000
    async with Harness(downlink_hub, tmp_path) as ship:
        ship.answer()
        await ship.until(lambda: ship.downloader.fetches["offers"].offset >= 2 * FSYNC_EVERY_BYTES)
    async with Harness(downlink_hub, tmp_path) as ship:
        fetch = ship.downloader.fetches["offers"]
        assert fetch.state is DatasetState.DOWNLOADING and fetch.offset >= 2 * FSYNC_EVERY_BYTES
        ship.answer()
        await ship.until(lambda: ship.held() == 1, timeout=30)
        assert ship.current_bytes() == data
    assert downlink_hub.requests[-1][2] >= 2 * FSYNC_EVERY_BYTES


async def test_a_refused_range_fetches_the_version_again_from_byte_0(downlink_hub, dataset_bytes, tmp_path):
    data = dataset_bytes(1, 30_000)
    downlink_hub.publish("offers", data)
    downlink_hub.cut_after = 300_000
    downlink_hub.refuse_ranges = 1
    async with Harness(downlink_hub, tmp_path) as ship:
        ship.answer()
        await ship.until(lambda: len(downlink_hub.requests) >= 3)
        downlink_hub.cut_after = None
        await ship.until(lambda: ship.held() == 1)
        assert ship.current_bytes() == data
    firsts = [first for *_, first in downlink_hub.requests]
    assert firsts[0] == 0 and 256 * 1024 <= firsts[1] <= 300_000 and firsts[2] == 0  # resumed, refused, again


@pytest.mark.guarantee("G4")
async def test_bytes_that_do_not_match_the_offers_sha256_are_never_switched_to(downlink_hub, dataset_bytes,
                                                                               tmp_path):
    good = dataset_bytes(1, 1000)
    offer = downlink_hub.publish("offers", good)
    downlink_hub.versions[("offers", 1)] = bad = good[:-1] + bytes([good[-1] ^ 1])  # damaged at the hub's end
    downlink_hub.offer = lambda name, version: offer  # ...which still offers the published sha256
    async with Harness(downlink_hub, tmp_path) as ship:
        ship.answer()
        await ship.until(lambda: ship.downloader.counters.last_error == "sha256 mismatch")
        assert ship.held() is None and ship.store.open_current("offers") is None
        downlink_hub.versions[("offers", 1)] = good
        await ship.until(lambda: ship.held() == 1, timeout=30)
        assert ship.current_bytes() == good != bad


async def test_a_pruned_version_waits_for_the_next_answer(downlink_hub, dataset_bytes, tmp_path):
    downlink_hub.publish("offers", dataset_bytes(1, 1000))
    downlink_hub.pruned.add(("offers", 1))
    async with Harness(downlink_hub, tmp_path) as ship:
        ship.answer()
        await ship.until(lambda: ship.downloader.fetches["offers"].state is DatasetState.WAITING)
        downlink_hub.publish("offers", dataset_bytes(2, 1000))
        ship.answer()
        await ship.until(lambda: ship.held() == 2)


async def test_a_thin_or_metered_link_holds_back_classes_above_its_max_and_urgent_uploads_go_first_under_a_cap(
        downlink_hub, dataset_bytes, tmp_path):
    downlink_hub.publish("offers", dataset_bytes(1, 1000))
    downlink_hub.publish("alerts", dataset_bytes(1, 1000))
    async with Harness(downlink_hub, tmp_path, policy=LinkPolicy(thin_max_class=1, metered=True),
                       priorities={"alerts": 1}, pending={2}, capped=True) as ship:
        ship.answer()
        await ship.until(lambda: ship.held("alerts") == 1)  # class 1 goes; the pending class 2 upload is not ahead
        await asyncio.sleep(0.3)
        assert ship.held("offers") is None
        assert "held back on a" in ship.downloader.waiting["offers"]
        ship.policy = LinkPolicy(thin_max_class=1, metered=False)  # in port: the metered flag is lifted
        await asyncio.sleep(1.3)
        assert ship.downloader.waiting["offers"] == "uploads of class 2 go first"
        ship.pending.clear()
        await ship.until(lambda: ship.held("offers") == 1)


async def test_no_download_without_room_in_the_disk_quota(downlink_hub, dataset_bytes, tmp_path):
    downlink_hub.publish("offers", dataset_bytes(1, 1000))
    async with Harness(downlink_hub, tmp_path, room=False) as ship:
        ship.answer()
        await ship.until(lambda: "quota" in ship.downloader.waiting.get("offers", ""))
        assert downlink_hub.requests == []


async def test_without_a_cap_downloads_do_not_wait_for_uploads(downlink_hub, dataset_bytes, tmp_path):
    downlink_hub.publish("offers", dataset_bytes(1, 1000))
    async with Harness(downlink_hub, tmp_path, pending={0, 1}) as ship:  # a steady trickle of telemetry
        ship.answer()
        await ship.until(lambda: ship.held() == 1)


@pytest.mark.parametrize("size", [0])
async def test_an_empty_version_switches_without_a_request(downlink_hub, tmp_path, size):
    downlink_hub.publish("offers", b"")
    async with Harness(downlink_hub, tmp_path) as ship:
        ship.answer()
        await ship.until(lambda: ship.held() == 1)
    assert downlink_hub.requests == []
