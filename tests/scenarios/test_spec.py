"""Scenario files load into validated values; every mistake names the key and what is accepted."""

from __future__ import annotations

import pytest

from scenarios.spec import FAULT_KINDS, SCENARIO_DIRECTORY, ScenarioError, load, parse

SHIPPED = sorted(p.stem for p in SCENARIO_DIRECTORY.glob("*.toml"))


def test_the_shipped_scenarios_are_there_and_load():
    assert {"demo", "cruise-fleet", "fleet-soak", "stormy", "long-haul", "cluster"} <= set(SHIPPED)
    for name in SHIPPED:
        scenario = load(name)
        assert scenario.name == name and scenario.ships and scenario.tables


def test_every_shipped_scenario_is_in_the_docs_table():
    table = (SCENARIO_DIRECTORY.parent / "docs" / "scenarios.md").read_text()
    assert [name for name in SHIPPED if f"| `{name}` |" not in table] == []


def test_the_demo_has_three_ships_every_fault_kind_and_fits_in_two_minutes():
    demo = load("demo")
    assert len(demo.ships) == 3
    assert {f.kind for f in demo.faults} == set(FAULT_KINDS)
    assert demo.real_seconds + 30 <= 120  # ~10 s start-up, the drain and the check fit the rest


def test_cruise_fleet_has_twenty_ships_and_two_weeks():
    fleet = load("cruise-fleet")
    assert len(fleet.ships) == 20 and fleet.simulated_hours >= 14 * 24
    assert len({s.name for s in fleet.ships}) == 20


def test_a_minimal_scenario_gets_defaults(minimal):
    scenario = parse(minimal())
    assert scenario.scale == 10 * 3600 / 5
    assert scenario.links["port"].port and not scenario.links["at-sea"].port
    assert scenario.links["at-sea"].rate_bps == 256_000
    assert scenario.tables[0].priority == 5 and scenario.drain_profile == "port"


@pytest.mark.parametrize(("change", "message"), [
    ({"faults": [{"kind": "meteor"}]}, "kind 'meteor' is not one of"),
    ({"faults": [{"kind": "stall", "ship": "titanic"}]}, "ship 'titanic' is not in"),
    ({"faults": [{"kind": "stall", "at_hours": 99}]}, "at_hours must be within"),
    ({"faults": [{"kind": "stall", "sekonds": 3}]}, "unknown keys ['sekonds']"),
    ({"links": {"port": {"rate": "fast"}}}, "'fast' is not a rate"),
    ({"ships": [{"name": "aurora", "voyage": [["harbour", 2]]}]}, "voyage legs are [profile, simulated hours]"),
    ({"ships": [{"name": "Aurora!", "voyage": [["port", 2]]}]}, "site id 'Aurora!' is not valid"),
    ({"ships": [{"name": "a", "voyage": [["port", 1]]}, {"name": "a", "voyage": [["port", 1]]}]}, "unique"),
    ({"tables": {"telemetry": {"workload": "tweets", "rows_per_second": 1}}}, "workload 'tweets'"),
    ({"tables": {"Bad-Name": {"workload": "telemetry", "rows_per_second": 1}}}, "table name"),
    ({"scenario": {"name": "t", "simulated_hours": 10}}, "needs 'real_seconds'"),
    ({"scenario": {"name": "t", "simulated_hours": "ten", "real_seconds": 5}}, "must be a number"),
])
def test_mistakes_are_named(change, message, minimal):
    with pytest.raises(ScenarioError) as error:
        parse(minimal(**change))
    assert message in str(error.value)


def test_a_ship_group_gets_numbered_names(tmp_path, minimal):
    data = minimal(ships=[{"name": "cruise", "count": 3, "voyage": [["port", 1]], "stagger_hours": 5}])
    assert [s.name for s in parse(data).ships] == ["cruise-01", "cruise-02", "cruise-03"]


def test_an_unknown_file_lists_the_shipped_scenarios():
    with pytest.raises(ScenarioError, match="shipped scenarios: .*demo"):
        load("no-such-voyage")


@pytest.mark.parametrize("max_disk", ["20g", "20GiB", "512MB", "64mib"])
def test_a_ship_disk_is_spelled_as_on_the_edge_command_line(minimal, max_disk):
    """``--max-disk 20g`` works on the command line, so ``max_disk = "20g"`` works in a scenario file."""
    data = minimal(ships=[{"name": "aurora", "voyage": [["port", 1]], "max_disk": max_disk}])
    assert parse(data).ships[0].max_disk == max_disk


def test_a_ship_disk_that_is_not_a_size_is_named(minimal):
    with pytest.raises(ScenarioError, match="max_disk: '20 parsecs' is not a size"):
        parse(minimal(ships=[{"name": "aurora", "voyage": [["port", 1]], "max_disk": "20 parsecs"}]))


def test_the_hub_is_one_process_unless_the_file_asks_for_a_cluster(minimal):
    assert parse(minimal()).hub_processes == 1
    assert parse(minimal(hub={"processes": 3})).hub_processes == 3


@pytest.mark.parametrize(("change", "message"), [
    ({"hub": {"processes": 0}}, "[hub] processes must be 1 (one hub) .. 8"),
    ({"hub": {"processes": 3, "ledger": "sqlite"}}, "[hub] has unknown keys ['ledger']"),
    ({"faults": [{"kind": "edge-kill", "crash_points": ["after-delta-commit"]}]}, "crash_points is for kind"),
    ({"faults": [{"kind": "hub-kill", "crash_points": ["mid-air"]}]}, "crash_points ['mid-air'] are not among"),
])
def test_hub_mistakes_are_named(change, message, minimal):
    with pytest.raises(ScenarioError) as error:
        parse(minimal(**change))
    assert message in str(error.value)


def test_a_hub_kill_takes_the_hubs_crash_points(minimal):
    points = ["after-chunk-fsync", "after-ledger-commit", "before-delta-commit", "after-delta-commit"]
    (fault,) = parse(minimal(faults=[{"kind": "hub-kill", "crash_points": points}])).faults
    assert fault.crash_points == tuple(points)


def test_the_cluster_scenario_runs_three_hub_processes_and_kills_them_at_their_crash_points():
    cluster = load("cluster")
    assert cluster.hub_processes == 3 and len(cluster.ships) == 4
    kills = [f for f in cluster.faults if f.kind == "hub-kill"]
    assert sum(f.count for f in kills) >= 4 and {p for f in kills for p in f.crash_points} >= {
        "after-chunk-fsync", "after-ledger-commit", "before-delta-commit", "after-delta-commit"}
    assert cluster.real_seconds + 60 <= 240  # start-up, the drain and the check fit in four minutes


def test_a_publish_names_a_dataset_an_hour_rows_and_perhaps_ships(minimal):
    scenario = parse(minimal(publish=[{"dataset": "offers", "at_hours": 6, "rows": 50, "ships": ["aurora"]},
                                      {"dataset": "offers", "at_hours": 2, "rows": 2000}]))
    assert [(p.dataset, p.at_hours, p.rows, p.ships) for p in scenario.publishes] == [
        ("offers", 2.0, 2000, None), ("offers", 6.0, 50, ("aurora",))]  # in time order
    assert parse(minimal()).publishes == ()


@pytest.mark.parametrize(("publish", "message"), [
    ({"at_hours": 2, "rows": 10}, "[publish[0]] needs 'dataset'"),
    ({"dataset": "Offers!", "at_hours": 2, "rows": 10}, "[publish[0]] dataset: "),
    ({"dataset": "offers", "at_hours": 10, "rows": 10}, "at_hours must be within the voyage [0, 10)"),
    ({"dataset": "offers", "at_hours": "noon", "rows": 10}, "at_hours must be a number"),
    ({"dataset": "offers", "at_hours": 2, "rows": 0}, "rows must be 1 .. 2,000,000, not 0"),
    ({"dataset": "offers", "at_hours": 2, "rows": 2.5}, "rows must be an integer"),
    ({"dataset": "offers", "at_hours": 2, "rows": 10, "ships": ["titanic"]}, "ships must be distinct names from"),
    ({"dataset": "offers", "at_hours": 2, "rows": 10, "ships": []}, "leave it out for every ship"),
    ({"dataset": "offers", "at_hours": 2, "rows": 10, "ships": ["aurora", "aurora"]}, "distinct names"),
    ({"dataset": "offers", "at_hours": 2, "rows": 10, "version": 3}, "[publish[0]] has unknown keys ['version']"),
    ("offers", "[[publish]] entry 0 must be a table"),
])
def test_publish_mistakes_are_named(publish, message, minimal):
    with pytest.raises(ScenarioError) as error:
        parse(minimal(publish=[publish]))
    assert message in str(error.value)


def test_a_link_cut_may_wait_for_a_download(minimal):
    (cut,) = parse(minimal(faults=[{"kind": "link-cut", "during": "download"}])).faults
    assert cut.during == "download"
    assert parse(minimal(faults=[{"kind": "link-cut"}])).faults[0].during == "upload"
    for fault, message in (({"kind": "stall", "during": "download"}, "during is for kind = \"link-cut\" only"),
                           ({"kind": "link-cut", "during": "lunch"}, "during 'lunch' is not one of")):
        with pytest.raises(ScenarioError, match=message):
            parse(minimal(faults=[fault]))


def test_the_price_change_scenario_publishes_mid_voyage_to_a_ship_beyond_coverage():
    scenario = load("price-change")
    assert len(scenario.ships) == 4 and scenario.real_seconds <= 90
    middle = [p for p in scenario.publishes if 0.2 * scenario.simulated_hours < p.at_hours]
    assert middle and all(p.dataset == "offers" for p in scenario.publishes)
    corona = next(s for s in scenario.ships if s.name == "corona")
    blackout = [h for h, (profile, _) in zip(_leg_starts(corona.voyage), corona.voyage, strict=True)
                if not scenario.links[profile].up]
    assert blackout and all(blackout[0] < p.at_hours for p in middle)
    assert any(f.kind == "link-cut" and f.during == "download" for f in scenario.faults)


def _leg_starts(voyage):
    start, starts = 0.0, []
    for _, hours in voyage:
        starts.append(start)
        start += hours
    return starts
