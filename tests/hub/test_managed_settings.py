"""Managed settings at the hub (``hub.managed_settings``): canonical values, --all under per-site values, one
revision per ship that grows with every change concerning it. Store tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from hub.managed_settings import (
    ALL_SHIPS,
    SettingError,
    SettingsStore,
    ShipSettings,
    check_key,
    parse_assignment,
)


@pytest.fixture
def store(database, clock):
    return SettingsStore(database, clock)


@pytest.mark.parametrize("text, expected", [
    ("seal-size=32MiB", ("seal-size", "32MiB")),
    ("metered=YES", ("metered", "true")),
    ("priority=offers=1, telemetry=0", ("priority", "offers=1,telemetry=0")),
    ("thin-link-max-class=02", ("thin-link-max-class", "2")),
])
def test_assignments_are_stored_in_their_canonical_text(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text, words", [
    ("seal-size", "is not KEY=VALUE"),
    ("=1", "is not KEY=VALUE"),
    ("token=abc", "'token' is not a managed setting; choose from priority"),
    ("seal-size=huge", "--set seal-size: 'huge' is not a size"),
    ("priority=offers=12", "--set priority: 'offers=12' is not NAME=N with N from 0 to 9"),
    ("priority=Bad-Name=1", "--set priority:"),
    ("metered=maybe", "--set metered: 'maybe' is not true or false"),
    ("seal-age=" + "1" * 3000, "at most 2048 characters"),
])
def test_bad_assignments_name_the_key_and_the_rule(text, words):
    with pytest.raises(SettingError) as caught:
        parse_assignment(text)
    assert words in str(caught.value)
    with pytest.raises(SettingError, match="not a managed setting"):
        check_key("data")


def test_nothing_managed_is_revision_zero_and_no_settings(store):
    ship = store.for_ship("ship-1")
    assert (ship.revision, ship.values, ship.managed) == (0, {}, None)


def test_per_site_values_override_all_and_revisions_grow(store):
    assert store.configure([ALL_SHIPS], {"seal-size": "32MiB", "metered": "true"}, []) == [ALL_SHIPS]
    assert store.configure(["ship-1"], {"seal-size": "64MiB"}, []) == ["ship-1"]
    one, two = store.for_ship("ship-1"), store.for_ship("ship-2")
    assert (one.revision, one.values, one.sources) == (2, {"metered": "true", "seal-size": "64MiB"},
                                                       {"metered": ALL_SHIPS, "seal-size": "ship-1"})
    assert (two.revision, two.values) == (1, {"metered": "true", "seal-size": "32MiB"})
    assert one.managed.revision == 2 and one.managed.values == one.values

    assert store.configure(["ship-1"], {"seal-size": "64MiB"}, []) == []  # no change: no new revision
    assert store.for_ship("ship-1").revision == 2
    store.configure(["ship-1"], {}, ["seal-size"])  # falls back to the fleet-wide value
    assert store.for_ship("ship-1").values["seal-size"] == "32MiB" and store.for_ship("ship-1").revision == 3
    store.configure([ALL_SHIPS], {}, ["seal-size", "metered"])
    emptied = store.for_ship("ship-2")
    assert (emptied.revision, emptied.values) == (2, {}) and emptied.managed is not None  # "stop managing" is news
    assert store.for_ships(["ship-1", "ship-2"]) == {"ship-1": store.for_ship("ship-1"), "ship-2": emptied}


def test_a_stored_value_the_rules_no_longer_accept_is_left_out_of_the_answer(caplog):
    ship = ShipSettings("ship-1", 3, {"seal-size": "lots", "metered": "true"}, {"seal-size": "*", "metered": "*"})
    assert ship.managed.values == {"metered": "true"} and ship.managed.revision == 3
    assert "seal-size='lots' for ship-1 is no longer valid" in caplog.text
