"""``AiohttpHubTransport.download`` against a real (tiny) hub: Range, cuts, 404/410, the cap."""

from __future__ import annotations

import time

import pytest

from edge_node.sync.transport import AiohttpHubTransport, LinkDown, content_range_start


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.began: list[int] = []

    def begin(self, at: int) -> None:
        self.began.append(at)
        del self.data[at:]

    async def write(self, data: bytes) -> None:
        self.data += data


class CountingPacer:
    def __init__(self) -> None:
        self.taken = 0

    async def take(self, n: int) -> float:
        self.taken += n
        return 0.0


@pytest.fixture
async def transport(downlink_hub):
    pacer = CountingPacer()
    transport = AiohttpHubTransport(downlink_hub.url, downlink_hub.token, pacer=pacer, stall_seconds=5)
    transport.pacer_seen = pacer
    yield transport
    await transport.close()


async def test_a_whole_version_then_a_resume_from_an_offset(downlink_hub, dataset_bytes, transport):
    data = dataset_bytes(1, 30_000)
    offer = downlink_hub.publish("offers", data)
    sink = Sink()
    answer = await transport.download(offer.path, 0, sink, etag=offer.etag)
    assert (answer.status, bytes(sink.data), sink.began) == (200, data, [0])
    assert answer.headers["ETag"] == offer.etag
    assert transport.pacer_seen.taken == len(data)  # the cap meters what arrives
    resumed = Sink()
    resumed.data += data[:1000]
    answer = await transport.download(offer.path, 1000, resumed, etag=offer.etag)
    assert (answer.status, bytes(resumed.data), resumed.began) == (206, data, [1000])


async def test_a_cut_mid_body_is_link_down_after_the_sink_got_what_arrived(downlink_hub, dataset_bytes, transport):
    data = dataset_bytes(1, 30_000)
    offer = downlink_hub.publish("offers", data)
    downlink_hub.cut_after = 100_000
    sink = Sink()
    with pytest.raises(LinkDown):
        await transport.download(offer.path, 0, sink, etag=offer.etag)
    assert bytes(sink.data) == data[:len(sink.data)] and 0 < len(sink.data) <= 100_000


async def test_an_etag_of_another_version_gets_the_whole_file(downlink_hub, dataset_bytes, transport):
    offer = downlink_hub.publish("offers", dataset_bytes(1, 1000))
    sink = Sink()
    answer = await transport.download(offer.path, 10, sink, etag='"sha256:' + "0" * 64 + '"')
    assert (answer.status, sink.began) == (200, [0])


@pytest.mark.parametrize("status", [404, 410])
async def test_not_offered_and_pruned_come_back_as_answers_and_leave_the_sink_alone(downlink_hub, dataset_bytes,
                                                                                   transport, status):
    offer = downlink_hub.publish("offers", dataset_bytes(1, 1000))
    if status == 410:
        downlink_hub.pruned.add(("offers", 1))
    path = offer.path if status == 410 else offer.path.replace("/1", "/7")
    sink = Sink()
    answer = await transport.download(path, 0, sink)
    assert answer.status == status and sink.began == [] and answer.body


async def test_a_dead_hub_is_link_down():
    transport = AiohttpHubTransport("http://127.0.0.1:9", "t", stall_seconds=2)
    try:
        with pytest.raises(LinkDown):
            await transport.download("/v1/sync/datasets/offers/versions/1", 0, Sink())
    finally:
        await transport.close()


def test_content_range_start():
    assert content_range_start("bytes 100-199/200") == 100
    for bad in (None, "", "items 1-2/3", "bytes */200", "bytes x-1/2"):
        assert content_range_start(bad) is None


async def test_a_download_that_goes_silent_is_link_down_within_the_stall_time(downlink_hub, dataset_bytes):
    offer = downlink_hub.publish("offers", dataset_bytes(1, 30_000))
    downlink_hub.bytes_per_second = 4096  # one 16 KiB piece, then silence for 4 s: a half-open link
    transport = AiohttpHubTransport(downlink_hub.url, downlink_hub.token, stall_seconds=1)
    sink = Sink()
    started = time.monotonic()
    try:
        with pytest.raises(LinkDown, match="stalled"):
            await transport.download(offer.path, 0, sink)
    finally:
        await transport.close()
    assert time.monotonic() - started < 5 and len(sink.data) > 0
