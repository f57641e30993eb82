"""The ``harbour`` command: one entry point, three groups (``hub``, ``edge``, ``scenario``).

Each group lives with the package it drives (``hub/cli.py``, ``edge_node/cli.py``,
``scenarios/cli.py``); this module only assembles them, so that ``harbour --help`` never has to
import pyarrow, aiohttp or the merger just to print help.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click

from edge_node.cli import edge
from hub.cli import hub
from scenarios.cli import scenario

ENV_PREFIX = "HARBOUR"
"""Every option can come from the environment: HARBOUR_<GROUP>_<COMMAND>_<OPTION>, e.g. HARBOUR_EDGE_RUN_TOKEN."""


def load_config(ctx: click.Context, _param: click.Parameter, path: str | None) -> str | None:
    """Read a TOML config whose tables mirror the commands (``[edge.run]``, ``[hub.run]``) into the
    defaults of those commands. Click then applies flags over the environment over this file."""
    if path is None:
        return None
    try:
        document: dict[str, Any] = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise click.BadParameter(f"cannot read {path}: {error.strerror}", param_hint="--config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise click.BadParameter(f"{path} is not valid TOML: {error}", param_hint="--config") from None
    unknown = sorted(set(document) - set(cli.commands))
    if unknown:
        raise click.BadParameter(
            f"{path}: unknown section(s) {', '.join(unknown)}; use tables named after commands, "
            "e.g. [edge.run] or [hub.run]", param_hint="--config",
        )
    ctx.default_map = {**(ctx.default_map or {}), **_with_dashes_as_underscores(document)}
    return path


def _with_dashes_as_underscores(table: dict[str, Any]) -> dict[str, Any]:
    """``max-disk = "20GiB"`` in TOML reads like the flag; click names the parameter ``max_disk``.
    Command names keep their dashes (``add-site``), so only leaf keys are converted."""
    return {
        key: _with_dashes_as_underscores(value) if isinstance(value, dict) else value
        for key, value in ((k if isinstance(v, dict) else k.replace("-", "_"), v) for k, v in table.items())
    }


@click.group(context_settings={
    "help_option_names": ["-h", "--help"], "max_content_width": 100, "auto_envvar_prefix": ENV_PREFIX,
})
@click.version_option(package_name="harbour")
@click.option(
    "--config", type=click.Path(dir_okay=False), callback=load_config, is_eager=True, expose_value=False,
    envvar=f"{ENV_PREFIX}_CONFIG", help="TOML file with defaults per command, e.g. [edge.run] site = \"aurora\". "
    "Flags win over HARBOUR_* environment variables, which win over this file.",
)
def cli() -> None:
    """Harbour: edge-to-core data sync for fleets of ships.

    Each ship runs an edge node (`harbour edge run`) that keeps every acknowledged row on local disk
    and sends it to the hub (`harbour hub run`) whenever a link exists; the hub merges all ships'
    data into fleet-wide tables (`harbour hub query`). `harbour scenario run` replays voyages with
    outages to show that nothing is lost or counted twice.

    Every option can also be set in the environment as HARBOUR_<GROUP>_<COMMAND>_<OPTION>
    (e.g. HARBOUR_EDGE_RUN_TOKEN) or in the file given to --config.
    """


cli.add_command(hub)
cli.add_command(edge)
cli.add_command(scenario)

if __name__ == "__main__":
    cli()
