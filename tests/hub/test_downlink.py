"""A ship's desired state and how far it has got (``hub.downlink``): the pure comparison, and end to end through a
real hub -- publish and configure, the report answer, the ship's reported state in /v1/fleet, ``harbour hub
status``, ``harbour hub datasets`` and the fleet page."""

from __future__ import annotations

import json

import pytest

from hub.downlink import ship_status
from hub.fleet_page import render_parts
from hub.fleet_view import fleet_view
from hub.managed_settings import ShipSettings
from sync_protocol.downlink import DatasetOffer, DesiredState, ReportedDownlink

from .conftest import harbour, report

OFFER = DatasetOffer("offers", 3, "a" * 64, 10)


def settings(revision=2, **values) -> ShipSettings:
    return ShipSettings("ship-1", revision, values, {key: "*" for key in values})


def test_datasets_held_against_offered():
    status = ship_status((OFFER,), settings(0), ReportedDownlink(datasets={"offers": 2, "old": 1}))
    assert status["datasets"] == {"offers": {"offered": 3, "held": 2, "state": "pending"},
                                  "old": {"offered": None, "held": 1, "state": "in sync"}}
    assert ship_status((OFFER,), settings(0), None)["datasets"]["offers"] == {"offered": 3, "held": None,
                                                                               "state": "pending"}
    held = ship_status((OFFER,), settings(0), ReportedDownlink(datasets={"offers": 3}))
    assert held["datasets"]["offers"]["state"] == "in sync" and held["settings"]["state"] == ["in sync"]


@pytest.mark.parametrize("reported, state", [
    (None, ["not reported"]),
    (ReportedDownlink(settings_revision=1), ["pending"]),
    (ReportedDownlink(settings_revision=2), ["in sync"]),
    (ReportedDownlink(settings_revision=2, pinned={"seal-size": "8MiB"}, refused={"metered": "not a flag here"}),
     ["in sync", "pinned locally: seal-size=8MiB", "refused: metered not a flag here"]),
])
def test_settings_state_lines(reported, state):
    assert ship_status((), settings(2, **{"seal-size": "32MiB"}), reported)["settings"]["state"] == state


@pytest.mark.integration
def test_settings_and_versions_reach_the_answer_and_the_fleet_views(hub, tmp_path):
    ship1, ship2, operator = hub.add_site("ship-1"), hub.add_site("ship-2"), hub.add_operator()
    data = ["--data", str(hub.data)]
    (tmp_path / "offers.csv").write_text("sku,price\na,1.5\n")
    harbour("hub", "publish", "offers", str(tmp_path / "offers.csv"), *data)
    shown = harbour("hub", "configure", "--all", "--set", "seal-size=32MiB", *data).stdout
    assert "ship-1  revision 1 (changed)" in shown and "seal-size = 32MiB    [all ships]" in shown
    shown = harbour("hub", "configure", "ship-2", "--set", "priority=offers=1,telemetry=0", *data).stdout
    assert "ship-2  revision 2 (changed)" in shown and "ship-1" not in shown

    desired = DesiredState.from_json(report(hub, "ship-2", ship2).body)
    assert desired.settings.revision == 2
    assert desired.settings.values == {"seal-size": "32MiB", "priority": "offers=1,telemetry=0"}
    assert [(o.name, o.version) for o in desired.datasets] == [("offers", 1)]

    report(hub, "ship-1", ship1, {"datasets": {"offers": 1}, "settings": {"revision": 1,
                                                                         "applied": {"seal-size": "32MiB"}}})
    report(hub, "ship-2", ship2, {"datasets": {}, "settings": {
        "revision": 1, "pinned": {"priority": "offers=0"}, "refused": {"seal-size": "above the disk quota"}}})

    fleet = hub.request("GET", "/v1/fleet", {"Authorization": f"Bearer {operator}"}).json()
    sites = {s["site"]: s["downlink"] for s in fleet["sites"]}
    assert sites["ship-1"]["datasets"] == {"offers": {"offered": 1, "held": 1, "state": "in sync"}}
    assert sites["ship-1"]["settings"]["state"] == ["in sync"]
    assert sites["ship-2"]["datasets"]["offers"]["state"] == "pending"
    assert sites["ship-2"]["settings"]["state"] == ["pending", "pinned locally: priority=offers=0",
                                                    "refused: seal-size above the disk quota"]

    status = harbour("hub", "status", *data).stdout
    assert "ship-1               offers v1/v1; settings revision 1: in sync" in status
    assert "offers v-/v1 pending" in status and "pinned locally: priority=offers=0" in status
    assert "held: ship-1 v1 (since 20" in harbour("hub", "datasets", *data).stdout
    listing = json.loads(harbour("hub", "datasets", *data, "--format", "json").stdout)["datasets"][0]
    assert listing["ships"] == {"ship-1": 1} and listing["held_since"]["ship-1"].startswith("20")
    assert listing["waiting"] == {"ship-2": 1}  # registered, offered version 1, holds nothing yet
    assert "waiting for: ship-2 (v1)" in harbour("hub", "datasets", *data).stdout
    configure_view = harbour("hub", "configure", "ship-2", *data).stdout
    assert "pinned locally on board: priority=offers=0" in configure_view and "(changed)" not in configure_view

    view = fleet_view(fleet)
    assert {ship.name: ship.downlink_summary for ship in view.ships} == {
        "ship-1": "in sync", "ship-2": "1 dataset(s) pending, settings pending, pinned locally"}
    parts = render_parts(view, {}, 1_760_000_000.0)
    assert "Reference datasets of ship-2" in parts["details"] and "refused: seal-size" in parts["details"]
    assert "managed setting(s) refused on board: seal-size (above the disk quota)" in parts["rows"]
