"""``harbour scenario ...``: replay fleet voyages with outages and check that nothing was lost."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import click


@click.group()
def scenario() -> None:
    """Fleet and outage scenarios: simulated voyages against real hub and edge processes."""


@scenario.command("protocol-demo")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the fault sequence; replays exactly.")
def protocol_demo(seed: int) -> None:
    """Send segments of three ships through a link that loses, cuts, corrupts and replays requests and
    restarts both sides, in one process, and check every segment arrived exactly once. Exits 1 if not."""
    from .protocol_demo import run_demo

    sys.exit(0 if run_demo(seed, echo=click.echo) else 1)


@scenario.command("run")
@click.argument("file")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seed of the voyage's outages, fault times and workloads; the same seed replays the same plan.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write report.md, report.json and PNG charts into this directory.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the hub's and the ships' data directories and logs go (default: a temporary "
                   "directory, deleted afterwards unless the run fails).")
def run(file: str, seed: int, report_dir: Path | None, workdir: Path | None) -> None:
    """Replay a fleet voyage from a scenario FILE (a path, or the name of a shipped scenario: demo,
    cruise-fleet, fleet-soak, stormy, long-haul, cluster, price-change) against a real hub (or, with [hub] processes
    = N, a hub cluster behind HAProxy) and one real edge node per ship, inject its faults, publish its datasets, then
    check that every row an edge acknowledged is at the hub exactly once. Exits 1 if anything was lost, duplicated or
    unexpected, or the fleet did not drain (rows, or the newest version of a dataset published to a ship); 2 if the
    file is wrong."""
    from .runner import run_scenario
    from .spec import ScenarioError, load

    try:
        spec = load(file)
    except ScenarioError as error:
        raise click.UsageError(str(error)) from None
    keep = workdir is not None
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"harbour-{spec.name}-"))
    result = asyncio.run(run_scenario(spec, seed, workdir, echo=lambda line: click.echo(line)))
    from .report import summarise, summary_lines, write_report

    summary = write_report(result, report_dir) if report_dir else summarise(result)
    for line in summary_lines(summary):
        click.echo(line)
    if report_dir:
        click.echo(f"report: {report_dir / 'report.md'}")
    if result.passed and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not result.passed:
        click.echo(f"data directories and logs kept in {workdir}")
    sys.exit(0 if result.passed else 1)
