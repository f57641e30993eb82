"""Scheduling rules of the sync agent, against the hub's upload service over in-memory storage (deterministic).

The real path (hub process, sockets, proxy with cuts and stalls) is in ``test_sync_end_to_end.py``."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from edge_node.sync.agent import SyncAgent
from edge_node.sync.link import LinkMonitor, LinkPolicy
from edge_node.sync.memory_queue import MemorySegmentQueue as MemoryQueue
from edge_node.sync.transport import HubAnswer
from hub.simulated_hub import InMemoryHub
from sync_protocol import Manifest, SegmentId
from sync_protocol.chunking import ChunkSizer
from sync_protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.manifest import sha256_hex
from sync_protocol.segment_states import SegmentState
from sync_protocol.sender import CreateUpload, ProbeOffset
from sync_protocol.simulation import WirePatch


class SimulatedTransport:
    """HubTransport over the in-memory hub, with a fixed time per byte so that rates are measurable."""

    def __init__(self, hub: InMemoryHub, seconds_per_byte: float = 1e-6) -> None:
        self.hub = hub
        self.manifests: dict[str, Manifest] = {}
        self.forbidden: set[str] = set()
        self.seconds_per_byte = seconds_per_byte
        self.patches: list[str] = []

    def _answer(self, answer, seconds: float) -> HubAnswer:
        return HubAnswer(answer.status, answer.headers, answer.body, seconds)

    def _refuse(self, key: str) -> HubAnswer | None:
        if key in self.forbidden:
            error = RemoteProtocolError("token of another site", code=ErrorCode.FORBIDDEN)
            return HubAnswer(403, {}, error.to_body(), 0.01)
        return None

    async def create(self, metadata: str, length: int) -> HubAnswer:
        manifest = Manifest.from_upload_metadata(metadata)
        self.manifests[manifest.segment.upload_key] = manifest
        refused = self._refuse(manifest.segment.upload_key)
        return refused or self._answer(await self.hub.handle_async(CreateUpload(metadata, length), manifest, 0), 0.01)

    async def probe(self, upload_key: str) -> HubAnswer:
        return self._answer(await self.hub.handle_async(ProbeOffset(), self.manifests[upload_key], 0), 0.01)

    async def patch(self, upload_key, offset, chunk, checksum, tail=None) -> HubAnswer:
        await asyncio.sleep(0.001)  # let other uploads interleave, as on a real link
        self.patches.append(upload_key)
        wire = WirePatch(offset, len(chunk), chunk, checksum, tail)
        seconds = len(chunk) * self.seconds_per_byte
        return self._answer(await self.hub.handle_async(wire, self.manifests[upload_key], 0), seconds)

    async def report(self, site, document) -> HubAnswer:
        return HubAnswer(204, {}, b"", 0.01)

    async def close(self) -> None:
        pass


def add_segment(queue: MemoryQueue, data_dir: Path, table: str, seq: int, size: int, priority: int) -> Manifest:
    data = bytes([seq % 256]) * size
    path = f"{table}-{seq}.parquet"
    (data_dir / path).write_bytes(data)
    prev = GENESIS_DIGEST if seq == 1 else sha256_hex(bytes([(seq - 1) % 256]) * size)
    manifest = Manifest(SegmentId.of("ship-1", table, seq), 1, size, sha256_hex(data), sha256_hex(b"s"), prev,
                        priority, 0)
    queue.add(manifest, path)
    return manifest


def small_chunks() -> ChunkSizer:
    return ChunkSizer(size=1024, minimum=256, maximum=1024)


async def run_until(agent: SyncAgent, condition, timeout: float = 20.0) -> None:
    task = asyncio.create_task(agent.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "agent did not get there in time"
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def make_agent(tmp_path, queue, transport, *, policy=None, max_in_flight=2, monitor=None):
    policy = policy or LinkPolicy()
    monitor = monitor or LinkMonitor(clock=asyncio.get_running_loop().time)
    return SyncAgent(queue, tmp_path, transport, monitor, policy, asyncio.get_running_loop().time,
                     rng=random.Random(0), max_in_flight=max_in_flight, sizer_factory=small_chunks)


@pytest.mark.guarantee("G8")
async def test_every_segment_is_acked_only_after_the_hub_committed_it(tmp_path):
    queue, hub = MemoryQueue(), InMemoryHub()
    for seq in range(1, 6):
        add_segment(queue, tmp_path, "telemetry", seq, 3000, priority=2)
    agent = make_agent(tmp_path, queue, SimulatedTransport(hub))
    await run_until(agent, lambda: len(queue.acked_order) == 5)
    assert set(queue.acked_order) == set(hub.committed) and all(n == 1 for n in hub.commit_count.values())
    assert all(s.state is SegmentState.ACKED for s in queue.segments.values())


async def test_an_urgent_segment_overtakes_a_bulk_upload_in_progress(tmp_path):
    queue, hub = MemoryQueue(), InMemoryHub()
    bulk = add_segment(queue, tmp_path, "sales", 1, 200_000, priority=5)
    transport = SimulatedTransport(hub)
    agent = make_agent(tmp_path, queue, transport, max_in_flight=1)
    task = asyncio.create_task(agent.run())
    while len(transport.patches) < 3:  # the bulk upload is under way
        await asyncio.sleep(0.005)
    alarm = add_segment(queue, tmp_path, "alarms", 1, 2000, priority=0)
    agent.notify()
    try:
        while len(queue.acked_order) < 2:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert queue.acked_order == [alarm.segment, bulk.segment]
    assert agent.counters.pauses >= 1
    assert hub.commit_count[bulk.segment] == 1


@pytest.mark.guarantee("G7")
async def test_a_parked_segment_does_not_block_the_ones_behind_it(tmp_path):
    queue, hub = MemoryQueue(), InMemoryHub()
    first = add_segment(queue, tmp_path, "telemetry", 1, 1000, priority=1)
    for seq in range(2, 5):
        add_segment(queue, tmp_path, "telemetry", seq, 1000, priority=1)
    add_segment(queue, tmp_path, "sales", 1, 1000, priority=3)
    transport = SimulatedTransport(hub)
    transport.forbidden.add(first.segment.upload_key)
    agent = make_agent(tmp_path, queue, transport)
    # the refused segment is asked again with back-off before it is parked (PERMANENT_ANSWERS_BEFORE_PARKING);
    # the others do not wait for that
    await run_until(agent, lambda: len(queue.acked_order) == 4)
    assert queue.segments[first.segment].state is not SegmentState.ACKED
    await run_until(agent, lambda: queue.segments[first.segment].state is SegmentState.PARKED)
    assert "403" in dict(queue.parked())[first.segment]


async def test_a_thin_link_holds_bulk_back_and_sends_urgent_classes(tmp_path):
    queue, hub = MemoryQueue(), InMemoryHub()
    alarm = add_segment(queue, tmp_path, "alarms", 1, 1000, priority=0)
    bulk = add_segment(queue, tmp_path, "sales", 1, 50_000, priority=5)
    monitor = LinkMonitor(clock=asyncio.get_running_loop().time)
    monitor.record_round_trip(0.01)
    monitor.record_transfer(64_000, 2.01)  # measured 256 kbit/s: thin
    agent = make_agent(tmp_path, queue, SimulatedTransport(hub, seconds_per_byte=1 / 32_000), monitor=monitor)
    await run_until(agent, lambda: alarm.segment in queue.acked_order)
    await asyncio.sleep(0.3)
    assert bulk.segment not in queue.acked_order
    assert agent.describe()["policy"]["classes_allowed_up_to"] == 1


async def test_a_metered_link_policy_is_honoured_even_when_fast(tmp_path):
    queue, hub = MemoryQueue(), InMemoryHub()
    bulk = add_segment(queue, tmp_path, "sales", 1, 5000, priority=4)
    telemetry = add_segment(queue, tmp_path, "telemetry", 1, 5000, priority=1)
    agent = make_agent(tmp_path, queue, SimulatedTransport(hub), policy=LinkPolicy(metered=True, thin_max_class=1))
    await run_until(agent, lambda: telemetry.segment in queue.acked_order)
    await asyncio.sleep(0.3)
    # the probe may have sent one chunk of bulk, but it is not committed while the link is metered
    assert bulk.segment not in queue.acked_order


def test_bad_agent_settings_are_refused(tmp_path):
    with pytest.raises(ValueError):
        LinkPolicy(thin_max_class=12)
    with pytest.raises(ValueError):
        SyncAgent(MemoryQueue(), tmp_path, None, None, LinkPolicy(), lambda: 0.0, rng=random.Random(0),
                  max_in_flight=0)


async def test_segments_waiting_for_a_slot_are_created_at_the_hub_ahead(tmp_path):
    queue, hub = MemoryQueue(), InMemoryHub()
    for seq in range(1, 5):
        add_segment(queue, tmp_path, "telemetry", seq, 20_000, priority=2)
    transport = SimulatedTransport(hub)
    agent = make_agent(tmp_path, queue, transport, max_in_flight=1)
    prepared_seen = []

    def done_and_watch():
        prepared_seen.append(agent.describe()["prepared"])
        return len(queue.acked_order) == 4

    await run_until(agent, done_and_watch)
    assert max(prepared_seen) >= 1, "no upload was created ahead of its slot"
    assert all(n == 1 for n in hub.commit_count.values()) and len(hub.commit_count) == 4
    assert queue.acked_order == [m for m in sorted(queue.segments)]  # one slot: strictly in seq order


async def test_a_segment_whose_file_is_gone_is_parked_not_retried_forever(tmp_path, monkeypatch):
    import edge_node.sync.agent as agent_module

    monkeypatch.setattr(agent_module, "ROUND_FAILURE_PAUSE_SECONDS", 0.01)
    queue, hub = MemoryQueue(), InMemoryHub()
    lost = add_segment(queue, tmp_path, "telemetry", 1, 5000, priority=2)
    kept = add_segment(queue, tmp_path, "sales", 1, 5000, priority=3)
    (tmp_path / "telemetry-1.parquet").unlink()  # the ship's disk lost it
    agent = make_agent(tmp_path, queue, SimulatedTransport(hub))
    # skip the pauses after each failure
    agent.clock = lambda: asyncio.get_running_loop().time() + 1000 * sum(
        entry.local_failures for entry in agent._segments.values())
    await run_until(agent, lambda: queue.segments[lost.segment].state is SegmentState.PARKED)
    assert "cannot be read on board" in queue.segments[lost.segment].park_reason
    assert kept.segment in queue.acked_order


class BuggyTransport(SimulatedTransport):
    """A transport whose first PATCH of one segment trips over a bug in our own code."""

    def __init__(self, hub: InMemoryHub, buggy_key: str) -> None:
        super().__init__(hub)
        self.buggy_key = buggy_key
        self.bugs = 0

    async def patch(self, upload_key, offset, chunk, checksum, tail=None) -> HubAnswer:
        if upload_key == self.buggy_key and not self.bugs:
            self.bugs += 1
            raise LocalProtocolError("sender asked for a chunk past the end (a bug)")
        return await super().patch(upload_key, offset, chunk, checksum, tail)


async def test_a_bug_is_logged_with_its_traceback_and_never_parks_the_segment(tmp_path, caplog):
    queue, hub = MemoryQueue(), InMemoryHub()
    hit = add_segment(queue, tmp_path, "telemetry", 1, 5000, priority=2)
    other = add_segment(queue, tmp_path, "sales", 1, 5000, priority=3)
    transport = BuggyTransport(hub, hit.segment.upload_key)
    agent = make_agent(tmp_path, queue, transport)
    agent.clock = lambda: asyncio.get_running_loop().time() + 1000 * transport.bugs  # skip the rest after it
    await run_until(agent, lambda: {hit.segment, other.segment} <= set(queue.acked_order))
    assert transport.bugs == 1 and queue.segments[hit.segment].state is not SegmentState.PARKED
    bug_lines = [r for r in caplog.records if r.levelname == "ERROR" and "BUG" in r.getMessage()]
    assert bug_lines and bug_lines[0].exc_info and bug_lines[0].exc_info[0] is LocalProtocolError
    assert agent.describe()["parked_since_start"] == 0


async def test_a_metered_link_is_never_probed(tmp_path):
    queue, hub = MemoryQueue(), InMemoryHub()
    bulk = add_segment(queue, tmp_path, "sales", 1, 5000, priority=5)
    transport = SimulatedTransport(hub)
    agent = make_agent(tmp_path, queue, transport, policy=LinkPolicy(metered=True))
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert transport.patches == [] and bulk.segment not in queue.acked_order


def test_a_cut_on_a_thin_link_does_not_open_it_to_bulk():
    monitor = LinkMonitor(clock=lambda: 0.0)
    monitor.record_round_trip(0.01)
    monitor.record_transfer(64_000, 2.01)  # 256 kbit/s: thin
    monitor.record_failure("connection reset")
    assert monitor.state.value == "down" and monitor.measured_state.value == "thin"
    assert LinkPolicy().max_class(monitor.measured_state) == 1
