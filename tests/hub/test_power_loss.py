"""G2/G3 under power loss: a real hub whose data directory is on the power-cut filesystem (``scenarios.powercut``)
takes a chain of uploads, and at random moments loses power: SIGKILL, then every write it had not fsync'd is
dropped, torn or zero-filled. After each restart every chunk it answered 204 is still there (the upload resumes
at or past that offset), every segment it answered committed is still committed, and at the end each row is in
the Delta table exactly once. The seed is printed; HARBOUR_TEST_SEED replays a run.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time

import pytest

from .conftest import Hub, Segment, assert_exactly_once, chain

pytestmark = pytest.mark.integration

CHUNK_SIZES = (700, 4096, 16 * 1024, 1 << 20)
"""Chunks from smaller than a sector to a whole segment, so that cuts land inside and between fsyncs."""

ROWS_PER_SEGMENT = 3000


class Uploader:
    """Sends ``segments`` in order, resuming after every failure as the edge does; remembers what was acked."""

    def __init__(self, hub: Hub, token: str, segments: list[Segment], rng: random.Random) -> None:
        self.hub, self.token, self.segments, self.rng = hub, token, segments, rng
        self.committed: set[str] = set()
        self.acked_offset: dict[str, int] = {}
        self.refused: list[tuple[int, bytes]] = []
        self.done = 0  # segments committed, in order

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set() and self.done < len(self.segments):
            try:
                self._send(self.segments[self.done], stop)
            except OSError:
                time.sleep(0.02)  # the hub is down: as the edge, try again

    def _send(self, segment: Segment, stop: threading.Event) -> None:
        head = self.hub.head(self.token, segment.key)
        if head.committed:
            self.done += 1
            return
        if head.status == 404:
            head = self.hub.create(self.token, segment)
        if head.status not in (200, 201):
            self.refused.append((head.status, head.body))
            return
        offset = head.offset
        verified = int(head.headers.get("harbour-verified-offset", offset))
        tail = {"Harbour_Tail_Sha256": f"{verified} {hashlib.sha256(segment.data[verified:offset]).hexdigest()}"} \
            if verified < offset else {}
        while not stop.is_set():
            end = offset + self.rng.choice(CHUNK_SIZES)
            answer = self.hub.patch(self.token, segment.key, offset, segment.data[offset:end], **tail)
            tail = {}
            if answer.status != 204:
                self.refused.append((answer.status, answer.body))
                return
            offset = answer.offset
            self.acked_offset[segment.key] = offset
            if answer.committed:
                self.committed.add(segment.key)
                self.done += 1
                return

    def check_durable(self) -> None:
        """After a cut: nothing answered 204 or committed went back."""
        for segment in self.segments:
            acked = self.acked_offset.get(segment.key)
            if acked is None:
                continue
            head = self.hub.head(self.token, segment.key)
            if segment.key in self.committed:
                assert head.committed, f"{segment.key} was answered committed, and is not after a power cut"
            elif not head.committed:
                assert head.status == 200 and head.offset >= acked, \
                    f"{segment.key}: a chunk up to {acked} was answered 204; after a power cut {head.status} " \
                    f"{head.headers.get('upload-offset')}"


def power_loss_loop(hub_factory, powercut, cuts: int) -> dict[str, int]:
    seed = int(os.environ.get("HARBOUR_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"hub power-loss seed {seed} (replay with HARBOUR_TEST_SEED={seed})")
    rng = random.Random(seed)
    hub = hub_factory(powercut.path / "hub")
    token = hub.add_site("ship-a")
    segments = chain("ship-a", "telemetry", max(4, cuts), rows_per=ROWS_PER_SEGMENT)
    uploader = Uploader(hub, token, segments, rng)
    totals: dict[str, int] = {}
    for _ in range(cuts):
        hub.start()
        uploader.check_durable()
        stop = threading.Event()
        thread = threading.Thread(target=uploader.run, args=(stop,))
        thread.start()
        time.sleep(rng.uniform(0.1, 1.0))
        hub.kill()
        stop.set()
        thread.join(30)
        for key, value in powercut.cut(powercut.inside(hub.data), rng.randrange(2**32), [hub.process.pid]).items():
            totals[key] = totals.get(key, 0) + value
    hub.start()
    uploader.check_durable()
    uploader.run(threading.Event())
    assert not uploader.refused, f"the hub refused: {uploader.refused[:3]}"
    assert_exactly_once(hub, "telemetry", len(segments) * ROWS_PER_SEGMENT)
    assert "Traceback" not in hub.log(), hub.log()[-3000:]
    return totals


@pytest.mark.guarantee("G2", "G3")
def test_acked_chunks_and_commits_survive_power_cuts(powercut, hub_factory):
    totals = power_loss_loop(hub_factory, powercut, int(os.environ.get("HARBOUR_POWER_CUTS", "6")))
    print(f"power cuts: {totals}")
    assert totals["dropped_writes"] > 0, "no cut lost an unsynced write: the harness proved nothing"


SOAK_POWER_CUTS = 60
"""The hub's share of the soak run's >= 200 power cuts (the edge's 150 are in
tests/edge_node/test_crash_recovery.py): about 1.5 s each on a shared 2-core machine."""


@pytest.mark.guarantee("G2", "G3")
@pytest.mark.soak
@pytest.mark.timeout(600)
def test_acked_chunks_and_commits_survive_a_soak_of_power_cuts(powercut, hub_factory):
    started = time.monotonic()
    totals = power_loss_loop(hub_factory, powercut, SOAK_POWER_CUTS)
    print(f"{SOAK_POWER_CUTS} power cuts in {time.monotonic() - started:.0f} s: {totals}")
    assert totals["torn"] and totals["zeros"], totals


@pytest.mark.guarantee("G2")
def test_a_merged_batch_survives_a_power_cut(powercut, hub_factory):
    """The merger deletes a batch's staging files once the ledger says merged: by then the Delta commit must be
    on disk, not only in the page cache (delta-rs writes without fsync)."""
    hub = hub_factory(powercut.path / "hub")
    token = hub.add_site("ship-a")
    hub.start()
    segments = chain("ship-a", "telemetry", 2, rows_per=ROWS_PER_SEGMENT)
    for segment in segments:
        assert hub.upload(token, segment).committed
    hub.wait_merged(2 * ROWS_PER_SEGMENT, "telemetry")
    deadline = time.monotonic() + 20
    while list(hub.data.glob("uploads/*.seg")):  # the merger deletes them right after the ledger's update
        assert time.monotonic() < deadline, "the merged segments' staging files were never deleted"
        time.sleep(0.05)
    hub.kill()
    powercut.cut(powercut.inside(hub.data), 7, [hub.process.pid])
    hub.start()
    assert_exactly_once(hub, "telemetry", 2 * ROWS_PER_SEGMENT)


DISK_FAULTS = [("write", "ENOSPC", -1), ("write", "EIO", 2), ("fsync", "EIO", 2), ("truncate", "EIO", 1)]
"""(operation, errno, how many times) in the hub's staging area and ledger."""


@pytest.mark.guarantee("G3")
@pytest.mark.parametrize("op, error, times", DISK_FAULTS, ids=[f"{op}-{error}" for op, error, _ in DISK_FAULTS])
def test_a_disk_fault_fails_the_chunk_retryably_and_the_upload_completes(powercut, hub_factory, op, error, times):
    """The Nth write / fsync / truncate under the hub's directory fails: the chunk is answered with an error the
    edge retries (500, 503 or 507 for a full disk), never 204; once the fault clears the upload resumes and
    commits, and a power cut afterwards loses nothing that was answered."""
    seed = int(os.environ.get("HARBOUR_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"hub disk fault seed {seed} (replay with HARBOUR_TEST_SEED={seed})")
    rng = random.Random(seed)
    hub = hub_factory(powercut.path / "hub")
    token = hub.add_site("ship-a")
    hub.start()
    segments = chain("ship-a", "telemetry", 3, rows_per=ROWS_PER_SEGMENT)
    uploader = Uploader(hub, token, segments, rng)
    powercut.fault(op, nth=rng.randint(1, 8), error=error, times=times, prefix=powercut.inside(hub.data))
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,))
    thread.start()
    time.sleep(1.5)
    stop.set()
    thread.join(30)
    assert powercut.clear_faults() > 0, "the fault never fired: the workload missed it"
    assert uploader.refused, "a disk fault was answered as if the chunk were stored"
    for status, body in uploader.refused:
        assert status in (500, 503, 507), (status, body)
    if op == "write" and error == "ENOSPC":
        assert any(status == 507 for status, _ in uploader.refused), uploader.refused[:3]
    uploader.refused.clear()
    uploader.run(threading.Event())
    assert not uploader.refused and uploader.done == len(segments)
    hub.kill()
    powercut.cut(powercut.inside(hub.data), rng.randrange(2**32), [hub.process.pid])
    hub.start()
    uploader.check_durable()
    assert_exactly_once(hub, "telemetry", len(segments) * ROWS_PER_SEGMENT)


@pytest.mark.guarantee("G2")
def test_a_batch_settled_after_a_crash_survives_a_power_cut(powercut, hub_factory):
    """The hub dies right after a Delta commit (still in the page cache); at restart ``reconcile`` finds the
    commit, finishes the batch and deletes its staging files. A power cut then must not take the commit away."""
    hub = hub_factory(powercut.path / "hub")
    token = hub.add_site("ship-a")
    segments = chain("ship-a", "telemetry", 2, rows_per=ROWS_PER_SEGMENT)
    hub.start(crash_at="after-delta-commit")
    for segment in segments:
        try:
            hub.upload(token, segment)
        except OSError:
            break
    assert hub.wait_exit(30) == -9, hub.log()[-2000:]
    hub.start()
    deadline = time.monotonic() + 20
    while "had reached the table before the crash" not in hub.log():
        assert time.monotonic() < deadline, f"the open batch was not settled: {hub.log()[-2000:]}"
        time.sleep(0.05)
    hub.kill()
    powercut.cut(powercut.inside(hub.data), 11, [hub.process.pid])
    hub.start()
    for segment in segments:  # whatever was not acknowledged before the crash is resent, as an edge would
        if not hub.head(token, segment.key).committed:
            hub.upload(token, segment)
    assert_exactly_once(hub, "telemetry", len(segments) * ROWS_PER_SEGMENT)
