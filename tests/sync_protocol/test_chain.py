from __future__ import annotations

import pytest

from sync_protocol.chain import ChainLink, chain_status, check_link
from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.manifest import Manifest, sha256_hex

DIGESTS = {seq: sha256_hex(str(seq).encode()) for seq in range(0, 12)}


def link(seq: int) -> ChainLink:
    return ChainLink(DIGESTS[seq], GENESIS_DIGEST if seq == 1 else DIGESTS[seq - 1])


def test_empty_and_contiguous():
    assert chain_status({}).watermark == 0
    status = chain_status({seq: link(seq) for seq in range(1, 6)})
    assert (status.watermark, status.highest, status.gaps, status.breaks) == (5, 5, (), ())


def test_gaps_are_listed_as_ranges():
    status = chain_status({seq: link(seq) for seq in (1, 2, 5, 6, 9)})
    assert status.watermark == 2 and status.gaps == ((3, 4), (7, 8)) and not status.complete


def test_a_spliced_history_is_a_break_and_stops_the_watermark():
    links = {seq: link(seq) for seq in range(1, 6)}
    links[4] = ChainLink(DIGESTS[4], DIGESTS[0])
    status = chain_status(links)
    assert status.breaks == (4,) and status.watermark == 3


def test_check_link_refuses_a_splice_from_either_side():
    manifest = Manifest(SegmentId.of("s", "t", 3), 1, 1, DIGESTS[3], DIGESTS[0], DIGESTS[2], 0, 0)
    check_link(manifest, link(2), link(4))
    with pytest.raises(RemoteProtocolError) as caught:
        check_link(manifest, ChainLink(DIGESTS[9], DIGESTS[8]), None)
    assert caught.value.code is ErrorCode.CHAIN_CONFLICT
    with pytest.raises(RemoteProtocolError):
        check_link(manifest, None, ChainLink(DIGESTS[4], DIGESTS[9]))
