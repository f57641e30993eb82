"""``harbour hub ...``: run the hub and manage its sites, operators, queries and status."""

from __future__ import annotations

import click


@click.group()
def hub() -> None:
    """The harbour side: receives segments from every ship and merges them into fleet tables."""
