"""A plan is a pure function of the scenario and the seed: same seed, same outages, same faults."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

from scenarios.plan import make_plan
from scenarios.spec import load, parse


def test_same_seed_same_plan_and_fault_sequence():
    demo = load("stormy")
    first, second = make_plan(demo, 42), make_plan(demo, 42)
    assert first == second and first.digest == second.digest
    assert [(f.at, f.kind, f.ship) for f in first.faults] == [(f.at, f.kind, f.ship) for f in second.faults]


def test_another_seed_another_plan():
    stormy = load("stormy")
    assert make_plan(stormy, 1).digest != make_plan(stormy, 2).digest
    assert [f.ship for f in make_plan(stormy, 1).faults] != [f.ship for f in make_plan(stormy, 2).faults]


def test_faults_are_in_time_order_within_their_window():
    plan = make_plan(load("stormy"), 3)
    times = [f.at for f in plan.faults]
    assert times == sorted(times) and times[0] >= 0 and times[-1] <= plan.duration


def test_every_leg_is_covered_and_legs_follow_the_voyage(minimal):
    scenario = parse(minimal())
    ship = make_plan(scenario, 1).ships[0]
    assert [leg.profile for leg in ship.legs] == ["port", "at-sea"]
    assert ship.legs[0].start == 0 and abs(ship.legs[-1].end - scenario.real_seconds) < 1e-9
    assert ship.legs[0].port and not ship.legs[1].port


def test_a_short_itinerary_repeats_and_a_stagger_rotates_it(minimal):
    data = minimal(ships=[{"name": "a", "count": 8, "voyage": [["port", 1], ["at-sea", 1]], "stagger_hours": 2}])
    scenario = parse(data)
    plans = make_plan(scenario, 5).ships
    assert all(abs(sum(leg.end - leg.start for leg in p.legs) - scenario.real_seconds) < 1e-9 for p in plans)
    assert len({p.legs[0].profile for p in plans}) == 2  # some ships start at sea, some in port


def test_outages_take_about_the_configured_share_of_time_at_sea(minimal):
    data = minimal(scenario={"name": "t", "simulated_hours": 2000, "real_seconds": 2000})
    data["links"]["at-sea"].update(down_fraction=0.05, outage_minutes=30)
    data["ships"] = [{"name": "a", "voyage": [["at-sea", 2000]]}]
    changes = make_plan(parse(data), 9).ships[0].changes
    down = sum(b.at - a.at for a, b in zip(changes, changes[1:], strict=False) if not a.state.up)
    assert 0.035 <= down / 2000 <= 0.065, down / 2000
    assert all(c.outage for c in changes if not c.state.up)


def test_the_link_state_carries_rate_and_latency(minimal):
    ship = make_plan(parse(minimal()), 1).ships[0]
    at_sea = next(c for c in ship.changes if c.profile == "at-sea")
    assert at_sea.state.rate_bps == 256_000 and at_sea.state.latency_s == 0.3 and at_sea.state.up


def test_random_ship_faults_pick_from_the_fleet_and_hub_faults_have_no_ship(minimal):
    scenario = parse(minimal(faults=[{"kind": "edge-kill", "count": 5}, {"kind": "hub-kill"}]))
    faults = make_plan(replace(scenario), 1).faults
    assert {f.ship for f in faults if f.kind == "edge-kill"} == {"aurora"}
    assert [f.ship for f in faults if f.kind == "hub-kill"] == [None]


def test_a_clusters_hub_kills_hit_every_process_never_the_same_twice_in_a_row(minimal):
    scenario = parse(minimal(hub={"processes": 3}, faults=[{"kind": "hub-kill", "count": 7}]))
    for seed in range(20):
        targets = [f.hub for f in make_plan(scenario, seed).faults]
        assert set(targets[:3]) == {0, 1, 2} and set(targets[3:6]) == {0, 1, 2}  # each once a round
        assert all(a != b for a, b in zip(targets, targets[1:], strict=False)), targets
    assert len({tuple(f.hub for f in make_plan(scenario, seed).faults) for seed in range(20)}) > 1  # seeded
    assert [f.target for f in make_plan(scenario, 1).faults][0] in {"hub1", "hub2", "hub3"}


def test_each_crash_point_in_turn_and_a_lone_hubs_plan_names_no_process(minimal):
    points = ["after-chunk-fsync", "before-delta-commit"]
    scenario = parse(minimal(faults=[{"kind": "hub-kill", "count": 4, "crash_points": points},
                                     {"kind": "stall", "count": 3}]))
    faults = [f for f in make_plan(scenario, 2).faults if f.kind == "hub-kill"]
    assert sorted(f.crash_at for f in faults) == sorted(points * 2)
    assert {f.hub for f in faults} == {None} and {f.target for f in faults} == {"hub"}
    assert "armed to die at" in faults[0].describe()


def test_crash_points_and_a_cluster_change_no_other_fault_of_the_plan(minimal):
    faults = [{"kind": "stall", "count": 3}, {"kind": "edge-kill", "count": 2}]
    plain = make_plan(parse(minimal(faults=faults)), 4)
    cluster = make_plan(parse(minimal(hub={"processes": 2}, faults=faults)), 4)
    assert plain.ships == cluster.ships and plain.faults == cluster.faults


def test_publishes_are_planned_in_real_seconds_and_numbered_in_time_order(minimal):
    scenario = parse(minimal(publish=[{"dataset": "menus", "at_hours": 8, "rows": 5, "ships": ["aurora"]},
                                      {"dataset": "offers", "at_hours": 4, "rows": 10}]))
    plan = make_plan(scenario, 1)
    assert [(p.at, p.number, p.dataset, p.ships) for p in plan.publishes] == [
        (2.0, 0, "offers", None), (4.0, 1, "menus", ("aurora",))]  # 10 simulated hours in 5 real seconds
    assert plan.digest != make_plan(parse(minimal()), 1).digest


def test_a_plan_without_publishes_keeps_the_digest_it_had_before_the_downlink(minimal):
    """Digests are quoted in reports: a scenario that publishes nothing (and link-cuts waiting for uploads, as
    before) keeps its digest, so reports from older runs can still be compared."""
    plan = make_plan(parse(minimal(faults=[{"kind": "link-cut", "at_hours": 2}])), 5)
    old = asdict(plan)
    del old["publishes"]
    for fault in old["faults"]:
        del fault["during"]
    assert plan.digest == hashlib.sha256(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:16]
