"""What a run proved, in numbers: the checker's verdict, the faults, drain times, link use, bytes.

``summarise(result)`` computes everything once (a plain dict, which is also ``report.json``);
``write_report(result, DIR)`` adds ``report.md`` and the charts; ``summary_lines`` is what the command
prints at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .charts import backlog_chart, throughput_chart
from .freshness import FLEET

if TYPE_CHECKING:
    from .runner import RunResult, Ship

DRAINED_BELOW_BYTES = 64 * 1024
"""A ship counts as drained when its backlog is below this (or 5% of what it arrived with): the
workload keeps writing in port, so the backlog never stays at exactly zero."""


def drain_after_port_calls(ship: Ship) -> list[dict[str, Any]]:
    calls = []
    for leg in ship.plan.legs:
        if not leg.port or leg.start <= 0:
            continue
        during = [s for s in ship.samples if leg.start <= s["t"] < leg.end and s["backlog_bytes"] is not None]
        if not during:
            continue
        arrived = during[0]["backlog_bytes"]
        threshold = max(DRAINED_BELOW_BYTES, 0.05 * arrived)
        done = next((s["t"] for s in during if s["backlog_bytes"] <= threshold), None)
        calls.append({"port_call_at": round(leg.start, 1), "backlog_at_arrival_bytes": arrived,
                      "drained_after_seconds": None if done is None else round(done - leg.start, 1),
                      "stay_seconds": round(leg.end - leg.start, 1),
                      # a fault on the link (stalled, down, corrupting) during the call: not a fair test
                      "link_faulted": any(s.get("label", leg.profile) != leg.profile for s in during)})
    return calls


def link_utilisation(ship: Ship, port_profiles: set[str]) -> dict[str, Any]:
    """Per capped link profile: bytes forwarded / capacity, over the intervals where the ship had a
    backlog and the link was up. The edge's thin-link policy holds bulk classes back at sea on purpose,
    so a low number there is the policy working, not a slow link. Port links are left out: there the
    workload, not the link, is the limit (their number is the drain time)."""
    by_profile: dict[str, list[float]] = {}
    for before, after in zip(ship.samples, ship.samples[1:], strict=False):
        capacity, dt = before["capacity"], after["t"] - before["t"]
        if not capacity or dt <= 0 or not before["backlog_bytes"] or before["profile"] in port_profiles:
            continue
        sent, possible = by_profile.setdefault(before["label"], [0.0, 0.0])
        by_profile[before["label"]] = [sent + after["bytes_up"] - before["bytes_up"], possible + capacity * dt]
    return {label: round(sent / possible, 3) for label, (sent, possible) in by_profile.items() if possible}


def summarise(result: RunResult) -> dict[str, Any]:
    ships = []
    for ship in result.ships:
        raw = result.log.raw_bytes.get(ship.name, 0)
        wire = ship.link.proxy.stats.bytes_up
        ships.append({
            "ship": ship.name, "edge_starts": ship.edge.starts,
            "rows_acked": sum(n for (s, _), r in result.log.ranges.items() if s == ship.name for _, n in r["acked"]),
            "writes_refused_507": ship.quota_refusals, "other_write_errors": ship.write_errors[:10],
            "bytes_raw_arrow": raw, "bytes_on_wire_up": wire,
            "wire_to_raw": round(wire / raw, 3) if raw else None,
            "link": {"connections": ship.link.proxy.stats.connections, "cuts": ship.link.proxy.stats.cuts,
                     "refused": ship.link.proxy.stats.refused, "corrupted_reads": ship.link.proxy.stats.corrupted},
            "drain_after_port_calls": drain_after_port_calls(ship),
            "link_utilisation": link_utilisation(ship, {p.name for p in result.scenario.links.values() if p.port}),
        })
    return {
        "scenario": result.scenario.name, "source": result.scenario.source, "seed": result.plan.seed,
        "plan_digest": result.plan.digest, "passed": result.passed, "drained": result.drained,
        "drain_problems": result.drain_problems[:20],
        "operator_interventions": result.interventions,
        "simulated_hours": result.scenario.simulated_hours, "timings_seconds": {
            k: round(v, 1) for k, v in result.timings.items()},
        "faults_planned": len(result.plan.faults),
        "faults": [{"planned_at": round(f.planned_at, 2), "started_at": round(f.started_at, 2),
                    "ended_at": round(f.ended_at, 2), "kind": f.kind, "target": f.target, "outcome": f.outcome}
                   for f in result.faults],
        "check": result.check.to_json(),
        "ships": ships,
        "least_sold_items": result.sales_by_venue,
        "freshness": {"priorities": {t.name: t.priority for t in result.scenario.tables},
                      "by_ship_table": result.freshness},
        "series": {ship.name: {"samples": ship.samples,
                               "link": [vars(r) for r in ship.link.history]} for ship in result.ships},
        "hub_rows_merged": result.hub_samples,
        "hub_starts": result.hub_starts,
        "downlink": result.downlink.summary() if result.downlink else [],
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    totals = summary["check"]["totals"]
    verdict = "PASS" if summary["passed"] else "FAIL"
    t = summary["timings_seconds"]
    lines = [
        f"{verdict}: {summary['scenario']} seed {summary['seed']} (plan {summary['plan_digest']}) in "
        f"{t.get('total_seconds', 0):.0f} s (voyage {t.get('voyage_seconds', 0):.0f} s, drain "
        f"{t.get('drain_seconds', 0):.0f} s)",
        f"  rows acknowledged {totals['acked']:,}, at the hub {totals['at_hub']:,}; refused {totals['refused']:,}, "
        f"unanswered {totals['unknown']:,} ({totals['unknown_stored']:,} of those arrived)",
        f"  lost {totals['lost']}, duplicated {totals['duplicated']}, unexpected {totals['unexpected']}, "
        f"gaps {totals['gaps']}",
        f"  faults injected {len(summary['faults'])}/{summary['faults_planned']}: " + ", ".join(
            sorted({f["kind"] for f in summary["faults"]})),
    ]
    lines += freshness_lines(summary.get("freshness"))
    lines += hub_cluster_lines(summary)
    lines += downlink_lines(summary.get("downlink"))
    for intervention in summary["operator_interventions"]:
        lines.append(f"  WARNING: {intervention['ship']} parked {len(intervention['parked'])} segment(s), released "
                     f"by the operator at {intervention['at']} s: "
                     + "; ".join(" ".join(str(p.get("reason")).split())[:100] for p in intervention["parked"][:2]))
    if not summary["drained"]:
        lines.append("  NOT DRAINED: " + "; ".join(summary["drain_problems"][:5]))
    for row in summary["check"]["by_ship_table"]:
        if any(row[k] for k in ("lost", "duplicated", "unexpected", "gaps")):
            lines.append(f"  {row['ship']}/{row['table']}: lost {row['lost']}, duplicated {row['duplicated']}, "
                         f"unexpected {row['unexpected']}, gaps {row['gaps']} e.g. {row.get('examples', {})}")
    lines += [f"  {gap}" for gap in summary["check"]["gap_details"][:10]]
    if not summary["passed"]:
        lines.append(f"  replay with --seed {summary['seed']}")
    return lines


def hub_cluster_lines(summary: dict[str, Any]) -> list[str]:
    """A hub cluster's processes: how often each was started (1 + its kills and crash-point deaths)."""
    starts = summary.get("hub_starts") or {}
    if len(starts) < 2:
        return []
    kills = [f for f in summary["faults"] if f["kind"] == "hub-kill"]
    crashed = sum("died at" in f["outcome"] for f in kills)
    return [f"  hub cluster of {len(starts)} processes: {len(kills)} hub-kill(s), {crashed} died at their crash "
            f"point; starts " + ", ".join(f"{name} {n}" for name, n in starts.items())]


def _arrival(ship: dict[str, Any]) -> str:
    if ship["state"] == "received":
        return f"{ship['arrived_after_seconds']} s ({ship['link_at_arrival']})"
    if ship["state"] == "superseded":
        return f"skipped for v{ship['superseded_by']}"
    return "NOT RECEIVED"


def downlink_lines(downlink: list[dict[str, Any]] | None) -> list[str]:
    """Per published version: how long after the publish each ship switched to it, and on which link."""
    return [f"  downlink {v['dataset']} v{v['version']} published at {v['published_at_hours']:g} h: " + ", ".join(
        f"{s['ship']} {_arrival(s)}" for s in v["ships"]) for v in downlink or []]


def freshness_lines(freshness: dict[str, Any] | None) -> list[str]:
    """The headline's freshness: class 0 (alarms) first, then the slowest table."""
    if not freshness:
        return []
    fleet = freshness["by_ship_table"].get(FLEET, {})
    priorities = freshness["priorities"]
    lines = []
    for table, figures in sorted(fleet.items(), key=lambda item: (priorities.get(item[0], 9), item[0])):
        if figures:
            lines.append(f"  freshness {table} (class {priorities.get(table, '?')}): p50 {figures['p50']} s, "
                         f"p99 {figures['p99']} s, max {figures['max']} s over {figures['writes']:,} writes")
    return lines


def write_report(result: RunResult, directory: Path) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    (directory / "report.json").write_text(json.dumps(summary, indent=1, default=str))
    backlog_chart(result, directory / "backlog.png")
    throughput_chart(result, directory / "throughput.png")
    (directory / "report.md").write_text(markdown(summary))
    return summary


def downlink_markdown(downlink: list[dict[str, Any]]) -> list[str]:
    out = ["", "## Downlink: when each ship got each published version", "",
           "Real seconds from `harbour hub publish` committing the version (its summary line) to the ship's switch to "
           "it (the edge's `switched_at` in `GET /v1/datasets`, whose sha256 matched the hub's); the link is the "
           "ship's when the version was published and when it arrived (`(drain)`: after the voyage, on the drain "
           "profile). *skipped*: a newer version arrived first, as it should for a ship that was offline through "
           "both.", "",
           "| dataset | version | published at (sim h) | size | ship | link at publish | arrived after (s) | "
           "link at arrival |", "|---|--:|--:|--:|---|---|--:|---|"]
    for v in downlink:
        for s in v["ships"]:
            arrived = (s["arrived_after_seconds"] if s["state"] == "received" else
                       f"skipped (v{s['superseded_by']} arrived)" if s["state"] == "superseded" else "**not received**")
            out.append(f"| {v['dataset']} | {v['version']} | {v['published_at_hours']:g} | {_mib(v['size'])} | "
                       f"{s['ship']} | {s['link_at_publish']} | {arrived} | {s['link_at_arrival'] or '-'} |")
    return out


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MiB"


def markdown(summary: dict[str, Any]) -> str:
    out = [f"# Scenario `{summary['scenario']}`: {'PASS' if summary['passed'] else 'FAIL'}", ""]
    out += [f"Seed {summary['seed']}, plan `{summary['plan_digest']}` (same seed, same plan: "
            f"`harbour scenario run {summary['source']} --seed {summary['seed']}` replays it). "
            f"{summary['simulated_hours']:g} simulated hours; timings (s): "
            + ", ".join(f"{k.removesuffix('_seconds')} {v}" for k, v in summary["timings_seconds"].items()) + ".", ""]
    out += ["```", *summary_lines(summary), "```", ""]
    out += ["## Checker, per ship and table", "",
            "| ship | table | acked | refused | unanswered (arrived) | at hub | lost | duplicated | unexpected "
            "| gaps |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in summary["check"]["by_ship_table"]:
        out.append(f"| {r['ship']} | {r['table']} | {r['acked']:,} | {r['refused']:,} | {r['unknown']:,} "
                   f"({r['unknown_stored']:,}) | {r['at_hub']:,} | {r['lost']} | {r['duplicated']} | "
                   f"{r['unexpected']} | {r['gaps']} |")
    fresh = summary.get("freshness")
    if fresh:
        out += ["", "## Freshness: edge's 200 to queryable at the hub (real seconds)", "",
                "| ship | table | class | writes | p50 | p99 | max |", "|---|---|--:|--:|--:|--:|--:|"]
        for ship, tables in sorted(fresh["by_ship_table"].items()):
            for table, f in sorted(tables.items()):
                if f:
                    out.append(f"| {ship} | {table} | {fresh['priorities'].get(table, '?')} | {f['writes']:,} | "
                               f"{f['p50']} | {f['p99']} | {f['max']} |")
    if summary.get("downlink"):
        out += downlink_markdown(summary["downlink"])
    out += ["", "## Faults injected", "", "| at (s) | kind | target | outcome |", "|--:|---|---|---|"]
    out += [f"| {f['started_at']:.1f} | {f['kind']} | {f['target']} | {f['outcome']} |" for f in summary["faults"]]
    out += ["", "## Link and drain", "", "![backlog](backlog.png)", "", "![throughput](throughput.png)", "",
            "| ship | edge starts | bytes raw (Arrow) | bytes on the wire | wire/raw | cuts | corrupted reads | "
            "utilisation while backlogged | drain after port calls |", "|---|--:|--:|--:|--:|--:|--:|---|---|"]
    for s in summary["ships"]:
        drains = "; ".join(
            f"{_mib(c['backlog_at_arrival_bytes'])} in "
            + ("not drained" if c["drained_after_seconds"] is None else f"{c['drained_after_seconds']} s")
            for c in s["drain_after_port_calls"]) or "-"
        use = ", ".join(f"{k} {v:.0%}" for k, v in s["link_utilisation"].items()) or "-"
        out.append(f"| {s['ship']} | {s['edge_starts']} | {_mib(s['bytes_raw_arrow'])} | {_mib(s['bytes_on_wire_up'])} "
                   f"| {s['wire_to_raw'] or '-'} | {s['link']['cuts']} | {s['link']['corrupted_reads']} | {use} | "
                   f"{drains} |")
    out += ["", "Utilisation counts only capped links while the ship had a backlog; at sea the edge's thin-link "
            "policy holds bulk tables (priority > 1) back for port on purpose.", ""]
    if summary["least_sold_items"]:
        out += ["## The analyst's question: which items sold least across the fleet", "",
                "| venue | item | ships | sold | revenue (EUR) |", "|---|---|--:|--:|--:|"]
        out += [f"| {r['venue']} | {r['item']} | {r['ships']} | {r['sold']} | {r['revenue_eur']} |"
                for r in summary["least_sold_items"]]
        out.append("")
    return "\n".join(out)
