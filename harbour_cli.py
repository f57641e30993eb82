"""The ``harbour`` command: one entry point, three groups (``hub``, ``edge``, ``scenario``).

Each group lives with the package it drives (``hub/cli.py``, ``edge_node/cli.py``,
``scenarios/cli.py``); this module only assembles them, so that ``harbour --help`` never has to
import pyarrow, aiohttp or the merger just to print help.
"""

from __future__ import annotations

import click

from edge_node.cli import edge
from hub.cli import hub
from scenarios.cli import scenario


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="harbour")
def cli() -> None:
    """Harbour: edge-to-core data sync for fleets of ships.

    Each ship runs an edge node (`harbour edge run`) that keeps every acknowledged row on local disk
    and sends it to the hub (`harbour hub run`) whenever a link exists; the hub merges all ships'
    data into fleet-wide tables (`harbour hub query`). `harbour scenario run` replays voyages with
    outages to show that nothing is lost or counted twice.
    """


cli.add_command(hub)
cli.add_command(edge)
cli.add_command(scenario)

if __name__ == "__main__":
    cli()
