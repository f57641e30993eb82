"""End to end: a real hub and real edge nodes through link proxies, every kind of fault, then the checker.

The checker must also *fail* when the hub really lost or duplicated rows. Harbour's own code may not carry a
switch that breaks it on purpose, so the broken hub is made from outside: after the fleet drained, rows are
deleted from the hub's merged Delta table and others appended twice (what a hub whose dedup or merge was
broken would leave behind); the checker has to find exactly those.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from scenarios.plan import make_plan
from scenarios.report import summary_lines, write_report
from scenarios.runner import run_scenario
from scenarios.spec import FAULT_KINDS, load, parse

pytestmark = pytest.mark.integration
SMOKE = Path(__file__).with_name("smoke.toml")


@pytest.mark.guarantee("G1", "G2", "G3", "G4", "G8")
async def test_a_short_voyage_with_every_fault_loses_and_duplicates_nothing(tmp_path):
    scenario = load(SMOKE)
    lines: list[str] = []
    result = await run_scenario(scenario, 4, tmp_path / "run", echo=lines.append)
    summary = write_report(result, tmp_path / "report")
    assert result.passed, "\n".join(lines + summary_lines(summary))
    totals = result.check.totals()
    assert totals.acked > 5_000 and totals.at_hub >= totals.acked and totals.lost == totals.duplicated == 0
    # every kind of fault was injected, in the planned order, and did what it says
    assert [(f.kind, f.target) for f in result.faults] == [
        (e.kind, e.ship or "hub") for e in make_plan(scenario, 4).faults]
    assert {f.kind for f in result.faults} == set(FAULT_KINDS)
    outcome = {f.kind: f.outcome for f in result.faults}
    assert "quota reached" in outcome["disk-full"] and totals.refused > 0
    assert "back" in outcome["edge-kill"] and "back" in outcome["hub-kill"]
    ships = {s.name: s for s in result.ships}
    assert ships["ship-a"].edge.starts == 2 and result.ships[0].link.proxy.stats.cuts >= 1
    # the report is there, with its pictures
    assert {p.name for p in (tmp_path / "report").iterdir()} >= {"report.md", "report.json", "backlog.png",
                                                                 "throughput.png"}
    assert "PASS" in (tmp_path / "report" / "report.md").read_text()


QUIET = {
    "scenario": {"name": "quiet", "simulated_hours": 4, "real_seconds": 6, "drain_timeout_seconds": 30},
    "edge": {"seal_age": "1s", "log_level": "warning"},
    "tables": {"telemetry": {"workload": "telemetry", "rows_per_second": 300},
               "sales": {"workload": "point_of_sale", "rows_per_second": 100}},
    "links": {"port": {"rate": "100Mbit"}},
    "ships": [{"name": "aurora", "voyage": [["port", 4]]}],
}


async def test_the_checker_catches_rows_a_broken_hub_lost_or_duplicated(tmp_path):
    async def break_the_hub(fleet):
        tables = fleet.hub.tables
        telemetry = DeltaTable(str(tables / "telemetry"))
        ids = sorted(telemetry.to_pyarrow_table(columns=["row_id"]).column("row_id").to_pylist())
        doomed = ids[10:13]
        telemetry.delete(f"row_id IN ({', '.join(map(str, doomed))})")  # a hub that lost 3 rows
        sales = DeltaTable(str(tables / "sales")).to_pyarrow_table()
        twice = sales.filter(pc.is_in(sales.column("row_id"), sales.column("row_id")[:2]))
        write_deltalake(str(tables / "sales"), twice, mode="append", partition_by=["_site"])  # dedup broken
        broken["lost"], broken["duplicated"] = doomed, twice.column("row_id").to_pylist()

    broken: dict = {}
    result = await run_scenario(parse(QUIET), 1, tmp_path / "run", echo=lambda _: None, before_check=break_the_hub)
    assert result.drained and not result.passed
    telemetry = result.check.by_ship_table[("aurora", "telemetry")]
    sales = result.check.by_ship_table[("aurora", "sales")]
    assert telemetry.lost == 3 and telemetry.examples["lost"] == broken["lost"]
    assert sales.duplicated == 2 and sorted(sales.examples["duplicated"]) == sorted(broken["duplicated"])
    assert telemetry.duplicated == sales.lost == 0
