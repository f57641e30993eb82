"""The downlink's bookkeeping in a scenario: the generated price lists, first arrivals, what the drain waits for,
and the report's rows, on fabricated edge listings (the real fleet: ``test_shipped.py``, ``price-change``)."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest
from aiohttp import ClientSession, web

from scenarios.downlink import NOT_RECEIVED, SUPERSEDED, DownlinkLog, price_list, served_bytes_problems
from scenarios.plan import PublishEvent

SHIPS = ("aurora", "borealis", "corona")


def test_a_price_list_is_the_same_for_the_same_seed_and_number_and_changes_otherwise():
    first = price_list(7, 1, 500, 1_750_000_000_000)
    assert first.equals(price_list(7, 1, 500, 1_750_000_000_000))
    assert not first.equals(price_list(7, 2, 500, 1_750_000_000_000))
    assert not first.equals(price_list(8, 1, 500, 1_750_000_000_000))
    assert first.num_rows == 500 and first.column("sku").to_pylist() == list(range(1, 501))
    assert first.schema.field("valid_from").type == pa.timestamp("us", tz="UTC")
    offers, prices = first.column("offer_price_eur").to_numpy(), first.column("list_price_eur").to_numpy()
    assert ((offers >= prices * 0.75 - 0.01) & (offers <= prices * 1.05 + 0.01)).all()


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def published(log: DownlinkLog, version: int, at: float, ships=None, links=None) -> None:
    event = PublishEvent(at, at, version - 1, "offers", 100, ships)
    log.record_publish(event, version, {"sha256": sha(version), "size": 1000 * version, "rows": 100}, at,
                       lambda ship, t: (links or {}).get(ship, "port"))


def held(version: int, switched_at: float, digest: str | None = None) -> list[dict]:
    return [{"name": "offers", "version": version, "sha256": digest or sha(version), "switched_at": switched_at}]


def test_an_arrival_is_placed_at_the_edges_switch_with_the_link_then():
    log = DownlinkLog(SHIPS)
    published(log, 1, at=10.0, links={"corona": "down"})
    # seen at voyage second 20 (wall 1020); the edge switched at wall 1014.5, i.e. voyage second 14.5
    new = log.observe("corona", held(1, 1014.5), now=20.0, wall=1020.0, link_at=lambda s, t: f"{s}@{t}")
    assert new == [("offers", 1, log.arrivals[("corona", "offers", 1)])]
    arrival = log.arrivals[("corona", "offers", 1)]
    assert (arrival.at, arrival.link) == (14.5, "corona@14.5")
    assert log.observe("corona", held(1, 1014.5), now=21.0, wall=1021.0, link_at=lambda s, t: "x") == []  # once
    # a switch the clocks put before the publish counts from the publish, never before
    log.observe("aurora", held(1, 900.0), now=20.0, wall=1020.0, link_at=lambda s, t: "port")
    assert log.arrivals[("aurora", "offers", 1)].at == 10.0


def test_a_listed_version_with_other_bytes_is_not_an_arrival_but_a_problem():
    log = DownlinkLog(SHIPS)
    published(log, 1, at=1.0)
    assert log.observe("aurora", held(1, 5.0, digest=sha(99)), 6.0, 6.0, lambda s, t: "port") == []
    problems = log.problems({ship: held(1, 5.0) for ship in SHIPS})
    assert problems == [f"aurora: lists offers v1 with sha256 {sha(99)[:16]}..., the hub published {sha(1)[:16]}..."]


def test_the_drain_waits_for_the_newest_version_offered_to_each_ship():
    log = DownlinkLog(SHIPS)
    published(log, 1, at=1.0)
    published(log, 2, at=5.0, ships=("aurora", "borealis"))  # not offered to corona
    listings = {"aurora": held(2, 6.0), "borealis": held(1, 2.0), "corona": held(1, 2.0)}
    assert log.problems(listings) == [f"borealis: holds offers v1, not the newest offered to it, v2 (sha256 "
                                      f"{sha(2)[:16]}...)"]
    assert log.problems({**listings, "borealis": held(2, 7.0)}) == []
    assert log.problems({**listings, "borealis": None}) == ["borealis: edge not answering GET /v1/datasets"]
    assert log.problems({**listings, "borealis": []})[0].startswith("borealis: holds offers no version")
    assert DownlinkLog(SHIPS).problems({}) == []  # nothing published: nothing to wait for
    log.failures.append("publish offers: exited 1")
    assert log.problems({**listings, "borealis": held(2, 7.0)}) == ["publish failed: publish offers: exited 1"]


def test_the_summary_says_who_got_which_version_when_and_who_skipped_one():
    log = DownlinkLog(SHIPS)
    published(log, 1, at=10.0, links={"corona": "down"})
    published(log, 2, at=20.0, links={"corona": "down"})
    log.observe("aurora", held(1, 12.0), 12.0, 12.0, lambda s, t: "port")
    log.observe("aurora", held(2, 23.5), 24.0, 24.0, lambda s, t: "at-sea")
    log.observe("corona", held(2, 40.0), 41.0, 41.0, lambda s, t: "port")
    first, second = log.summary()
    by_ship = {s["ship"]: s for s in first["ships"]}
    assert by_ship["aurora"] == {"ship": "aurora", "state": "received", "link_at_publish": "port",
                                 "arrived_after_seconds": 2.0, "link_at_arrival": "port", "superseded_by": None}
    assert by_ship["corona"]["state"] == SUPERSEDED and by_ship["corona"]["superseded_by"] == 2
    assert by_ship["borealis"]["state"] == NOT_RECEIVED and by_ship["borealis"]["arrived_after_seconds"] is None
    assert {s["ship"]: s["arrived_after_seconds"] for s in second["ships"]} == {
        "aurora": 3.5, "borealis": None, "corona": 20.0}
    assert second["published_at_hours"] == 20.0 and second["sha256"] == sha(2) and second["audience"] == "every ship"


@pytest.mark.parametrize("ships", [("borealis",), None])
def test_only_the_ships_a_version_is_offered_to_are_listed_for_it(ships):
    log = DownlinkLog(SHIPS)
    published(log, 1, at=1.0, ships=ships)
    assert [s["ship"] for s in log.summary()[0]["ships"]] == list(ships or SHIPS)


async def test_the_bytes_an_edge_serves_must_hash_to_what_the_hub_published():
    """The drain's last check reads each version back from the edge (``GET /v1/datasets/{name}``): a listing can be
    right while the bytes are not."""
    served = {"aurora": (b"1", "1"), "borealis": (b"tampered", "1"), "corona": (b"1", "2")}

    async def dataset(request: web.Request) -> web.Response:
        body, version = served[request.match_info["ship"]]
        return web.Response(body=body, headers={"Harbour-Dataset-Version": version})

    app = web.Application()
    app.router.add_get("/{ship}/v1/datasets/offers", dataset)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    log = DownlinkLog(SHIPS)
    published(log, 1, at=1.0)
    try:
        async with ClientSession() as session:
            problems = await served_bytes_problems(
                session, {ship: f"http://127.0.0.1:{port}/{ship}" for ship in SHIPS}, log)
    finally:
        await runner.cleanup()
    assert [p.split(":")[0] for p in problems] == ["borealis", "corona"], problems
    assert f"sha256 {hashlib.sha256(b'tampered').hexdigest()[:16]}... (8 bytes)" in problems[0]
    assert problems[1].startswith("corona: serves offers v2")
