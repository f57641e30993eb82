"""``harbour scenario ...``: replay fleet voyages with outages and check that nothing was lost."""

from __future__ import annotations

import click


@click.group()
def scenario() -> None:
    """Fleet and outage scenarios: simulated voyages against real hub and edge processes."""
