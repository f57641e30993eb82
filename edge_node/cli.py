"""``harbour edge ...``: run a ship's edge node, look at its status, query its local data."""

from __future__ import annotations

import click


@click.group()
def edge() -> None:
    """The ship side: durable local ingest for on-board applications, and the sync agent."""
