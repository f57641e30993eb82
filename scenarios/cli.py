"""``harbour scenario ...``: replay fleet voyages with outages and check that nothing was lost."""

from __future__ import annotations

import sys

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
