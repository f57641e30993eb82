"""The ``harbour`` command: one entry point, three groups (``hub``, ``edge``, ``scenario``).

Each group lives with the package it drives (``hub/cli.py``, ``edge_node/cli.py``,
``scenarios/cli.py``); this module assembles them, so that ``harbour --help`` never has to import
pyarrow, aiohttp or the merger just to print help.

It also gives every command the same two ways to be configured besides flags, in one place:

* a TOML file, ``--config FILE`` on any command (or on ``harbour`` itself), whose tables follow the
  commands: ``[edge]`` sets options of every ``harbour edge`` command, ``[edge.run]`` of ``edge run``
  only. Keys are the flags without their dashes (``data = "ship-data"``, ``max-disk = "20GiB"``;
  ``max_disk`` works too); a key no command of the table takes is an error naming the valid ones;
* environment variables ``HARBOUR_<GROUP>_<FLAG>``, the flag in capitals with ``_`` for ``-``, e.g.
  ``HARBOUR_EDGE_DATA``, ``HARBOUR_EDGE_MAX_DISK`` or ``HARBOUR_HUB_FORMAT``: the same name for the same
  flag on every command of a group.

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
    for group_name, section in document.items():
        _check_keys(path, group_name, section)
    return document


def flag_name(param: click.Option) -> str:
    """What a user types for the option, without the dashes: ``--data`` -> ``data``, ``--max-disk`` ->
    ``max-disk``, ``--metered/--unmetered`` -> ``metered``. Config keys and environment variables use it."""
    longs = [opt for opt in param.opts if opt.startswith("--")]
    return longs[0][2:] if longs else (param.name or "")


def _key(text: str) -> str:
    return text.replace("_", "-")


def _flags(command: click.Command) -> dict[str, str]:
    """The command's options: flag name -> click's parameter name."""
    return {flag_name(p): p.name for p in command.params
            if isinstance(p, click.Option) and p.name not in ("config", "help") and p.name}


def _check_keys(path: str, group_name: str, section: Any) -> None:
    group = cli.commands[group_name]
    commands: dict[str, click.Command] = getattr(group, "commands", {})
    if not isinstance(section, dict):
        raise click.BadParameter(f"{path}: [{group_name}] must be a table of options", param_hint="--config")
    every_flag = sorted({flag for command in commands.values() for flag in _flags(command)})
    for key, value in section.items():
        if isinstance(value, dict):
            if key not in commands:
                raise click.BadParameter(f"{path}: [{group_name}.{key}] names no command; `harbour {group_name}` "
                                         f"has {', '.join(sorted(commands))}", param_hint="--config")
            valid = sorted(_flags(commands[key]))
            wrong = sorted(k for k in value if _key(k) not in valid or isinstance(value[k], dict))
            where = f"[{group_name}.{key}]"
        else:
            valid, wrong, where = every_flag, ([key] if _key(key) not in every_flag else []), f"[{group_name}]"
        if wrong:
            raise click.BadParameter(f"{path}: {where} has unknown key(s) {', '.join(wrong)}; the keys are the "
                                     f"flags without dashes: {', '.join(valid)}", param_hint="--config")


def defaults_for(document: dict[str, Any], group: str, command: click.Command) -> dict[str, Any]:
    """Default values for one command from ``[group]`` and ``[group.command]``, keyed as click names them."""
    flags = _flags(command)
    section = document.get(group, {})
    specific = section.get(command.name, {}) if isinstance(section, dict) else {}
    values: dict[str, Any] = {}
    for table in (section, specific):
        values.update({flags[_key(key)]: value for key, value in table.items()
                       if not isinstance(value, dict) and _key(key) in flags})
    return values


def _load_config(ctx: click.Context, _param: click.Parameter, path: str | None) -> None:
    if path is None:
        return
    document = read_config(path)
    names = ctx.command_path.split()[1:]
    if not names:  # `harbour --config F ...`: defaults for every command below
        ctx.default_map = {
            group: {name: defaults_for(document, group, command)
                    for name, command in getattr(cli.commands[group], "commands", {}).items()}
            for group in cli.commands
        }
    elif len(names) == 2:
        ctx.default_map = {**(ctx.default_map or {}), **defaults_for(document, names[0], ctx.command)}


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

    Every option can also be set in the environment as HARBOUR_<GROUP>_<FLAG> (e.g.
    HARBOUR_EDGE_DATA for --data, HARBOUR_EDGE_MAX_DISK for --max-disk) or in a TOML file given with
    --config, whose keys are the flags without dashes ([edge] data = "ship-data").
    """


def _configure(group: click.Group) -> None:
    """Give every command of ``group`` a --config option and an environment variable per option."""
    for command in group.commands.values():
        if not any(param.name == "config" for param in command.params):
            command.params.insert(0, _config_option())
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in ("config", "help"):
                continue
            # One rule, whatever the command set: the variable is named after the flag, not the parameter.
            param.envvar = f"{ENV_PREFIX}_{group.name.upper()}_{flag_name(param).upper().replace('-', '_')}"
            param.show_envvar = True


cli.params.append(_config_option())
for _group in (hub, edge, scenario):
    cli.add_command(_group)
    _configure(_group)

if __name__ == "__main__":
    cli()
