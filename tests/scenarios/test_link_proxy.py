"""The link proxy does to real sockets what a ship's link does: rate, latency, cuts, corruption, stalls."""

from __future__ import annotations

import asyncio
import time

import pytest

from scenarios.link_proxy import LinkProxy, LinkState


class Sink:
    """A TCP server that counts what it receives and echoes it back."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer):
        try:
            while data := await reader.read(65536):
                self.received.extend(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def close(self):
        self.server.close()


@pytest.fixture
async def sink():
    server = Sink()
    port = await server.start()
    yield server, port
    server.close()


async def connect(proxy: LinkProxy):
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def test_rate_is_held_to_the_configured_bandwidth(sink):
    server, port = sink
    proxy = await LinkProxy("127.0.0.1", port, state=LinkState(rate_bps=2_000_000)).start()
    reader, writer = await connect(proxy)
    payload = bytes(250_000)  # 1 s at 2 Mbit/s
    started = time.monotonic()
    writer.write(payload)
    await writer.drain()
    await reader.readexactly(len(payload))
    elapsed = time.monotonic() - started
    writer.close()
    await proxy.stop()
    assert 0.85 <= elapsed <= 1.6, elapsed
    assert bytes(server.received) == payload


async def test_latency_is_added_each_way(sink):
    _, port = sink
    proxy = await LinkProxy("127.0.0.1", port, state=LinkState(latency_s=0.15)).start()
    reader, writer = await connect(proxy)
    started = time.monotonic()
    writer.write(b"ping")
    await reader.readexactly(4)
    rtt = time.monotonic() - started
    writer.close()
    await proxy.stop()
    assert 0.29 <= rtt <= 0.6, rtt


async def test_cut_all_resets_open_connections_and_down_refuses_new_ones(sink):
    _, port = sink
    proxy = await LinkProxy("127.0.0.1", port).start()
    reader, writer = await connect(proxy)
    writer.write(b"hello")
    await reader.readexactly(5)
    assert proxy.cut_all() == 1
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 2)
    proxy.update(up=False)
    reader, writer = await connect(proxy)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 2)
    assert proxy.stats.refused == 1 and proxy.stats.cuts == 1
    await proxy.stop()


async def test_a_stalled_link_keeps_the_connection_open_and_moves_nothing(sink):
    server, port = sink
    proxy = await LinkProxy("127.0.0.1", port, state=LinkState(stall=True)).start()
    reader, writer = await connect(proxy)
    writer.write(b"data")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.5)
    assert server.received == b"" and not writer.is_closing()
    proxy.update(stall=False)
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"data"
    await proxy.stop()


async def test_corruption_flips_bytes(sink):
    server, port = sink
    proxy = await LinkProxy("127.0.0.1", port, state=LinkState(corrupt_probability=1.0)).start()
    reader, writer = await connect(proxy)
    writer.write(bytes(1000))
    await writer.drain()
    await asyncio.sleep(0.3)
    await proxy.stop()
    assert len(server.received) == 1000 and any(server.received)
    assert proxy.stats.corrupted >= 1


async def test_cut_after_upstream_bytes_cuts_exactly_there(sink):
    server, port = sink
    proxy = await LinkProxy("127.0.0.1", port, state=LinkState(cut_after_upstream_bytes=30_000)).start()
    reader, writer = await connect(proxy)
    writer.write(bytes(100_000))
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(100_000), 3)
    await asyncio.sleep(0.2)
    await proxy.stop()
    assert len(server.received) == 30_000 and proxy.stats.cuts == 1
