"""Sender and receiver over a link that loses, duplicates, truncates, corrupts and replays, with
restarts of either side: every segment ends committed exactly once, intact, and the sender knows (G2-G4, G8)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sync_protocol.chain import ChainLink, chain_status
from sync_protocol.limits import MAX_SEGMENT_DIGEST_FAILURES
from sync_protocol.manifest import sha256_hex
from sync_protocol.simulation import Fault, SimulatedHub, Simulation, build_segments

ALL_FAULTS = list(Fault)
payloads = st.lists(st.binary(min_size=1, max_size=700), min_size=1, max_size=3)
fault_lists = st.lists(st.sampled_from(ALL_FAULTS), max_size=60)


def run(payload_list: list[bytes], faults: list[Fault], seed: int, checksums: bool = True, chunk: int = 64):
    hub = SimulatedHub()
    edge = build_segments("ship-7", "telemetry", payload_list)
    sim = Simulation(hub, edge, list(faults), random.Random(seed), checksums=checksums, chunk_size=chunk)
    stats = sim.run()
    return hub, edge, stats


def assert_exactly_once(hub: SimulatedHub, edge, stats) -> None:
    assert stats.parked == []
    for manifest in edge.manifests:
        segment = manifest.segment
        assert hub.commit_count[segment] == 1, f"{segment} committed {hub.commit_count[segment]} times"
        assert sha256_hex(hub.committed_bytes[segment]) == manifest.sha256
        assert hub.committed_bytes[segment] == edge.files[segment]
        assert segment in edge.acked, f"the sender of {segment} does not know it was committed"
    assert hub.staged == {}, "a committed upload left its staging behind"
    links = {m.segment.seq: ChainLink(m.sha256, m.prev_sha256) for m in hub.ledger.values()}
    status = chain_status(links)
    assert status.watermark == len(edge.manifests) and status.complete


@pytest.mark.guarantee("G2", "G3", "G4")
@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload_list=payloads, faults=fault_lists, seed=st.integers(0, 2**32), chunk=st.sampled_from([8, 64, 300]))
@example(payload_list=[b"x" * 100], faults=[Fault.CRASH_HUB_BEFORE_COMMIT] * 3, seed=1, chunk=64)
@example(payload_list=[b"y" * 130], faults=[Fault.LOSE_ANSWER, Fault.LOSE_ANSWER, Fault.LOSE_ANSWER], seed=2, chunk=64)
@example(payload_list=[b"z" * 70, b"w" * 5], faults=[Fault.REPLAY_OLD_CHUNK] * 20, seed=3, chunk=8)
def test_every_segment_committed_exactly_once_whatever_the_link_does(payload_list, faults, seed, chunk):
    hub, edge, stats = run(payload_list, faults, seed, chunk=chunk)
    assert_exactly_once(hub, edge, stats)


# Without Upload-Checksum only the whole-segment digest catches corruption; the sender parks after
# MAX_SEGMENT_DIGEST_FAILURES, so the generated corruptions stay below that.
no_checksum_faults = st.lists(st.sampled_from(ALL_FAULTS), max_size=40).filter(
    lambda faults: faults.count(Fault.CORRUPT_BODY) + faults.count(Fault.CORRUPT_AND_TRUNCATE)
    < MAX_SEGMENT_DIGEST_FAILURES
)


@pytest.mark.guarantee("G4")
@settings(max_examples=800, deadline=None)
@given(payload_list=payloads, faults=no_checksum_faults, seed=st.integers(0, 2**32))
def test_without_chunk_checksums_the_segment_digest_still_guards_the_commit(payload_list, faults, seed):
    hub, edge, stats = run(payload_list, faults, seed, checksums=False)
    assert_exactly_once(hub, edge, stats)


class CutAt:
    """An rng whose every truncation cuts at the same byte."""

    def __init__(self, cut: int) -> None:
        self.cut = cut

    def randrange(self, start, stop=None):
        return min(self.cut, start - 1) if stop is None else start


@pytest.mark.guarantee("G2", "G3")
def test_a_cut_at_every_byte_offset_of_every_chunk_still_commits_once():
    payload = bytes(range(256)) * 2  # 512 bytes: 8 chunks of 64
    for chunk_index in range(8):
        for cut in range(65):
            # Requests: create, then PATCH 0..7; truncate the chunk_index-th PATCH at `cut`.
            faults = [Fault.NONE] * (1 + chunk_index) + [Fault.TRUNCATE_BODY]
            hub = SimulatedHub()
            edge = build_segments("ship-1", "sales", [payload])

            stats = Simulation(hub, edge, faults, CutAt(cut), chunk_size=64, min_chunk=64).run()
            assert_exactly_once(hub, edge, stats)


@pytest.mark.guarantee("G3")
def test_resent_bytes_after_a_cut_are_at_most_the_chunk_in_flight():
    payload = bytes(4096)
    clean_hub, clean_edge, clean = run([payload], [], seed=0, chunk=64)
    faults = [Fault.NONE] * 20 + [Fault.LOSE_ANSWER]
    hub, edge, stats = run([payload], faults, seed=0, chunk=64)
    assert_exactly_once(hub, edge, stats)
    assert stats.bytes_sent - clean.bytes_sent <= 64


@pytest.mark.guarantee("G4", "G7")
def test_corruption_without_checksums_eventually_parks_instead_of_looping():
    faults = [Fault.NONE] + [Fault.CORRUPT_BODY] * 200
    hub, edge, stats = run([b"q" * 40], faults, seed=5, checksums=False, chunk=64)
    assert len(stats.parked) == 1 and "sha256" in stats.parked[0]
    assert hub.ledger == {}


@pytest.mark.guarantee("G2", "G3", "G4")
@pytest.mark.soak
@pytest.mark.timeout(1800)
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload_list=payloads, faults=st.lists(st.sampled_from(ALL_FAULTS), max_size=200), seed=st.integers(0, 2**32),
       chunk=st.sampled_from([8, 64, 300]))
def test_soak_long_fault_sequences(payload_list, faults, seed, chunk):
    hub, edge, stats = run(payload_list, faults, seed, chunk=chunk)
    assert_exactly_once(hub, edge, stats)


def test_a_manifest_that_lies_about_its_file_is_parked_after_one_upload_and_never_committed():
    from sync_protocol.segment_contents import SegmentContents

    def lying_footer(manifest, data):  # every file holds one row fewer than its manifest says
        return SegmentContents(manifest.row_count - 1, manifest.schema_fingerprint)

    hub = SimulatedHub(read_contents=lying_footer)
    edge = build_segments("ship-7", "telemetry", [b"x" * 400, b"y" * 300])
    stats = Simulation(hub, edge, [], random.Random(5), chunk_size=64).run()
    assert len(stats.parked) == 2 and all("manifest-mismatch" in reason for reason in stats.parked)
    assert hub.ledger == {} and hub.staged == {} and not edge.acked
    assert stats.bytes_sent == 700  # each segment's bytes went once; the refusals that followed carried none
