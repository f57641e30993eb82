"""Write bodies share the edge's in-flight budget by the bytes they sent (``edge_node.body_budget``)."""

from __future__ import annotations

import asyncio

import pytest

from edge_node.body_budget import BudgetDeadlock, ByteBudget


async def test_a_share_holds_what_it_took_until_it_ends():
    budget = ByteBudget(100)
    async with budget.share() as share:
        await share.take(60)
        await share.take(30)
        assert (budget.used, share.held) == (90, 90)
    assert budget.used == 0


async def test_an_announcement_holds_nothing_so_a_sending_body_is_not_kept_waiting():
    budget = ByteBudget(100)
    silent = [budget.share() for _ in range(4)]
    for each in silent:
        await each.__aenter__()  # announced, nothing sent: nothing taken
    async with budget.share() as sending:
        await asyncio.wait_for(sending.take(100), 1)
    for each in silent:
        await each.__aexit__(None, None, None)


async def test_a_full_budget_makes_the_next_bytes_wait_for_a_body_to_finish():
    budget = ByteBudget(100)
    order = []

    async def body(name: str, sizes: list[int], hold: float) -> None:
        async with budget.share() as share:
            for size in sizes:
                await share.take(size)
            order.append(name)
            await asyncio.sleep(hold)  # decoding and writing

    await asyncio.gather(body("first", [80], 0.2), body("second", [10, 50], 0))
    assert order == ["first", "second"]


async def test_bodies_that_all_wait_for_each_other_refuse_the_smallest_and_the_rest_finish():
    budget = ByteBudget(100)
    steps = [asyncio.Event() for _ in range(3)]

    async def body(index: int, first: int, more: int) -> str:
        async with budget.share() as share:
            await share.take(first)
            steps[index].set()
            await asyncio.gather(*(step.wait() for step in steps))  # all hold part of the budget
            try:
                await share.take(more)
            except BudgetDeadlock:
                return "refused"
            await asyncio.sleep(0.01)
            return "done"

    results = await asyncio.wait_for(asyncio.gather(body(0, 40, 30), body(1, 30, 30), body(2, 20, 30)), 5)
    assert results.count("refused") >= 1 and results[0] == "done", results
    assert budget.used == 0


@pytest.mark.guarantee("G7")
async def test_four_silent_64_mib_announcements_do_not_delay_another_write(tmp_path):
    """Issue 16, finding 3: they held the whole 256 MiB budget until their body timeout (15 s)."""
    import time

    import aiohttp
    import pyarrow as pa
    from aiohttp.test_utils import TestServer

    from edge_node.codecs import ARROW_STREAM, encode_arrow_stream
    from edge_node.config import MAX_INFLIGHT_BODY_BYTES, EdgeConfig
    from edge_node.node import EdgeNode
    from edge_node.server import make_app
    from sync_protocol import SiteId

    node = EdgeNode(EdgeConfig(SiteId("ship-1"), tmp_path / "edge"), time.time)
    node.recover()
    async with TestServer(make_app(node)) as server:  # the real body timeouts
        silent = []
        for _ in range(MAX_INFLIGHT_BODY_BYTES // (64 * 1024 * 1024) + 1):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"POST /v1/tables/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                         b"Content-Length: 67108864\r\n\r\nid\n")
            await writer.drain()
            silent.append(writer)
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.post(f"http://{server.host}:{server.port}/v1/tables/events",
                                    data=encode_arrow_stream(pa.table({"id": [1]})),
                                    headers={"Content-Type": ARROW_STREAM}) as answer:
                assert answer.status == 200
            assert time.monotonic() - started < 2
        for writer in silent:
            writer.close()
