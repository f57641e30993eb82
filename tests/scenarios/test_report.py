"""Drain times after port calls, link utilisation, and the report's verdict lines."""

from __future__ import annotations

from types import SimpleNamespace

from scenarios.plan import Leg
from scenarios.report import drain_after_port_calls, link_utilisation, markdown, summary_lines


def sample(t, backlog, bytes_up=0, label="at-sea", capacity=32_000.0):
    return {"t": t, "backlog_bytes": backlog, "bytes_up": bytes_up, "label": label, "profile": label,
            "capacity": capacity}


def ship(samples, legs):
    return SimpleNamespace(samples=samples, plan=SimpleNamespace(legs=legs))


def test_drain_time_is_measured_from_the_port_call_until_the_backlog_is_gone():
    legs = (Leg(0, 10, "at-sea", False), Leg(10, 30, "port", True))
    samples = [sample(t, 1_000_000) for t in range(10)] + [
        sample(10, 1_000_000, label="port"), sample(11, 600_000, label="port"), sample(12, 40_000, label="port"),
        sample(13, 0, label="port")]
    [call] = drain_after_port_calls(ship(samples, legs))
    assert call == {"port_call_at": 10, "backlog_at_arrival_bytes": 1_000_000, "drained_after_seconds": 2,
                    "stay_seconds": 20, "link_faulted": False}


def test_a_port_call_that_never_drains_says_so_and_the_first_leg_is_no_port_call():
    legs = (Leg(0, 5, "port", True), Leg(5, 10, "at-sea", False), Leg(10, 12, "port", True))
    samples = [sample(t, 5_000_000, label="port") for t in (10, 11)]
    assert drain_after_port_calls(ship(samples, legs)) == [
        {"port_call_at": 10, "backlog_at_arrival_bytes": 5_000_000, "drained_after_seconds": None,
         "stay_seconds": 2, "link_faulted": False}]


def test_utilisation_counts_only_backlogged_capped_intervals_outside_port():
    samples = [sample(0, 100, 0), sample(1, 100, 16_000), sample(2, 0, 48_000), sample(3, 0, 48_000),
               sample(4, 100, 48_000, label="port", capacity=12.5e6), sample(5, 100, 10e6, label="port")]
    # 48 kB sent in the 2 backlogged seconds at 32 kB/s; the idle second and the port link do not count
    assert link_utilisation(ship(samples, ()), {"port"}) == {"at-sea": 0.75}


def summary(passed=True, **totals):
    counts = {"acked": 10, "at_hub": 10, "refused": 0, "unknown": 0, "unknown_stored": 0, "lost": 0,
              "duplicated": 0, "unexpected": 0, "gaps": 0, **totals}
    return {"scenario": "t", "source": "t.toml", "seed": 5, "plan_digest": "abc", "passed": passed,
            "drained": True, "drain_problems": [], "operator_interventions": [], "simulated_hours": 1,
            "timings_seconds": {"total_seconds": 9}, "faults_planned": 0, "faults": [], "ships": [],
            "least_sold_items": [],
            "check": {"passed": passed, "totals": counts, "gap_details": [], "by_ship_table": [
                {"ship": "a", "table": "t", **counts, "examples": {"lost": [7]} if totals.get("lost") else {}}]}}


def test_a_failed_run_names_the_counts_the_rows_and_the_seed():
    lines = summary_lines(summary(passed=False, lost=1, at_hub=9))
    assert lines[0].startswith("FAIL: t seed 5") and "lost 1" in lines[2]
    assert any("a/t: lost 1" in line and "[7]" in line for line in lines) and "replay with --seed 5" in lines[-1]
    assert "# Scenario `t`: FAIL" in markdown(summary(passed=False, lost=1))


def test_a_clean_run_passes():
    lines = summary_lines(summary())
    assert lines[0].startswith("PASS") and not any("replay" in line for line in lines)


def test_a_port_call_spent_in_a_link_fault_is_marked_as_such():
    legs = (Leg(0, 5, "at-sea", False), Leg(5, 10, "port", True))
    samples = [sample(t, 90_000, label="stalled") for t in (5, 7, 9)]
    [call] = drain_after_port_calls(ship(samples, legs))
    assert call["drained_after_seconds"] is None and call["link_faulted"] is True


def test_the_downlink_section_says_when_each_ship_got_each_version():
    ships = [{"ship": "aurora", "state": "received", "link_at_publish": "port", "arrived_after_seconds": 2.1,
              "link_at_arrival": "port", "superseded_by": None},
             {"ship": "corona", "state": "superseded", "link_at_publish": "down", "arrived_after_seconds": None,
              "link_at_arrival": None, "superseded_by": 3},
             {"ship": "dorado", "state": "not received", "link_at_publish": "at-sea", "arrived_after_seconds": None,
              "link_at_arrival": None, "superseded_by": None}]
    downlink = [{"dataset": "offers", "version": 2, "published_at_hours": 20.0, "published_at_seconds": 37.9,
                 "rows": 50_000, "size": 726_560, "sha256": "ab" * 32, "audience": "every ship", "ships": ships}]
    lines = summary_lines({**summary(), "downlink": downlink})
    assert ("  downlink offers v2 published at 20 h: aurora 2.1 s (port), corona skipped for v3, dorado NOT RECEIVED"
            in lines)
    page = markdown({**summary(), "downlink": downlink})
    assert "## Downlink: when each ship got each published version" in page
    assert "| offers | 2 | 20 | 0.69 MiB | aurora | port | 2.1 | port |" in page
    assert "| offers | 2 | 20 | 0.69 MiB | dorado | at-sea | **not received** | - |" in page
    assert "## Downlink" not in markdown(summary())
