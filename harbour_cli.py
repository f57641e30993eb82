"""The ``harbour`` command: one entry point, three groups (``hub``, ``edge``, ``scenario``).

Each group lives with the package it drives (``hub/cli.py``, ``edge_node/cli.py``,
``scenarios/cli.py``); this module assembles them, so that ``harbour --help`` never has to import
pyarrow, aiohttp or the merger just to print help.

It also gives every command the same two ways to be configured besides flags, in one place:

* a TOML file, ``--config FILE`` on any command (or on ``harbour`` itself), whose tables follow the
  commands: ``[edge]`` sets options of every ``harbour edge`` command, ``[edge.run]`` of ``edge run``
  only (keys spelled like the flags: ``max-disk = "20GiB"``);
* environment variables ``HARBOUR_<GROUP>_<OPTION>``, e.g. ``HARBOUR_EDGE_TOKEN`` or ``HARBOUR_HUB_DATA``.

A flag wins over the environment, the environment over the file (click's own order of sources).
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


def read_config(path: str) -> dict[str, Any]:
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise click.BadParameter(f"cannot read {path}: {error.strerror}", param_hint="--config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise click.BadParameter(f"{path} is not valid TOML: {error}", param_hint="--config") from None
    unknown = sorted(set(document) - set(cli.commands))
    if unknown:
        raise click.BadParameter(
            f"{path}: unknown section(s) {', '.join(unknown)}; use tables named after the command groups, "
            f"e.g. [edge] or [hub.run]", param_hint="--config",
        )
    return document


def _options(table: Any) -> dict[str, Any]:
    """The option values of a TOML table (its scalars and arrays), keyed as click names them."""
    if not isinstance(table, dict):
        return {}
    return {key.replace("-", "_"): value for key, value in table.items() if not isinstance(value, dict)}


def defaults_for(document: dict[str, Any], group: str, command: str) -> dict[str, Any]:
    section = document.get(group, {})
    specific = section.get(command, {}) if isinstance(section, dict) else {}
    return {**_options(section), **_options(specific)}


def _load_config(ctx: click.Context, _param: click.Parameter, path: str | None) -> None:
    if path is None:
        return
    document = read_config(path)
    names = ctx.command_path.split()[1:]
    if not names:  # `harbour --config F ...`: defaults for every command below
        ctx.default_map = {
            group: {name: defaults_for(document, group, name) for name in getattr(cli.commands[group], "commands", {})}
            for group in cli.commands
        }
    elif len(names) == 2:
        ctx.default_map = {**(ctx.default_map or {}), **defaults_for(document, *names)}


def _config_option() -> click.Option:
    return click.Option(
        ["--config"], type=click.Path(dir_okay=False), callback=_load_config, is_eager=True, expose_value=False,
        help="TOML file of defaults: [GROUP] for every command of the group, [GROUP.COMMAND] for one. "
        "Flags win over HARBOUR_* environment variables, which win over this file.",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="harbour")
def cli() -> None:
    """Harbour: edge-to-core data sync for fleets of ships.

    Each ship runs an edge node (`harbour edge run`) that keeps every acknowledged row on local disk
    and sends it to the hub (`harbour hub run`) whenever a link exists; the hub merges all ships'
    data into fleet-wide tables (`harbour hub query`). `harbour scenario run` replays voyages with
    outages to show that nothing is lost or counted twice.

    Every option can also be set in the environment as HARBOUR_<GROUP>_<OPTION> (e.g.
    HARBOUR_EDGE_TOKEN) or in a TOML file given with --config.
    """


def _configure(group: click.Group) -> None:
    """Give every command of ``group`` a --config option and an environment variable per option."""
    for command in group.commands.values():
        if not any(param.name == "config" for param in command.params):
            command.params.insert(0, _config_option())
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in ("config", "help"):
                continue
            if param.envvar is None:
                param.envvar = f"{ENV_PREFIX}_{group.name.upper()}_{param.name.upper()}"
            param.show_envvar = True


cli.params.append(_config_option())
for _group in (hub, edge, scenario):
    cli.add_command(_group)
    _configure(_group)

if __name__ == "__main__":
    cli()
