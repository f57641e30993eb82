"""``harbour edge ...``: run a ship's edge node, look at its status, query its local data.

Heavy imports (pyarrow, aiohttp, duckdb) happen inside the commands, so ``harbour --help`` stays fast.
Every ``run`` option can also come from ``HARBOUR_EDGE_<OPTION>`` or the ``[edge]`` table of a TOML file
given with ``--config``; a flag wins over the environment, the environment over the file.
"""

from __future__ import annotations

import json
import sys
import time
import tomllib
from pathlib import Path

import click


def _load_config_file(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        try:
            with open(value, "rb") as file:
                section = tomllib.load(file).get("edge", {})
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise click.BadParameter(f"cannot read {value}: {error}") from None
        ctx.default_map = {key.replace("-", "_"): val for key, val in section.items()}
    return value


def _size(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from .config import parse_size

    try:
        return None if value is None else parse_size(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from .config import parse_duration

    try:
        return None if value is None else parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8701; port 0 picks a free one)")
    return host, int(port)


@click.group()
def edge() -> None:
    """The ship side: durable local ingest for on-board applications, and the sync agent."""


@edge.command()
@click.option("--config", type=click.Path(dir_okay=False), callback=_load_config_file, is_eager=True,
              expose_value=False, help="TOML file whose [edge] table sets any option below (flags and "
              "HARBOUR_EDGE_* variables win over it).")
@click.option("--site", required=True, envvar="HARBOUR_EDGE_SITE",
              help="This ship's site id ([a-z0-9][a-z0-9-]{0,62}), as registered at the hub. A data directory "
              "belongs to one site for life.")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              envvar="HARBOUR_EDGE_DATA", help="Data directory (created if new): write-ahead log, segments, ledger.")
@click.option("--listen", default="127.0.0.1:8701", show_default=True, envvar="HARBOUR_EDGE_LISTEN",
              help="HOST:PORT of the ingest API. Port 0 picks a free port (printed at start).")
@click.option("--hub", "hub_url", envvar="HARBOUR_EDGE_HUB", help="URL of the hub to sync to. Stored; the sync "
              "agent is not active in this version, so segments wait in the ledger until acked.")
@click.option("--token", envvar="HARBOUR_EDGE_TOKEN", help="This site's hub token (prefer --token-file: "
              "command lines are visible to other users of the machine).")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              envvar="HARBOUR_EDGE_TOKEN_FILE", help="File holding the site's hub token (first line).")
@click.option("--max-disk", default="20GiB", show_default=True, callback=_size, envvar="HARBOUR_EDGE_MAX_DISK",
              help="Disk quota for the data directory (e.g. 20GiB, 500MB). When reached, writes get 507 and "
              "nothing stored is dropped; acked segments are collected early to make room.")
@click.option("--seal-size", default="64MiB", show_default=True, callback=_size, envvar="HARBOUR_EDGE_SEAL_SIZE",
              help="Seal a table's write-ahead log into a Parquet segment once it holds this much.")
@click.option("--seal-age", default="5m", show_default=True, callback=_duration, envvar="HARBOUR_EDGE_SEAL_AGE",
              help="...or once its oldest row is this old (e.g. 30s, 5m), so quiet tables still sync soon.")
@click.option("--retention", default="7d", show_default=True, callback=_duration, envvar="HARBOUR_EDGE_RETENTION",
              help="Keep segments this long after the hub acknowledged them (for local queries), then delete.")
@click.option("--priority", "priorities", multiple=True, metavar="TABLE=N", envvar="HARBOUR_EDGE_PRIORITY",
              help="Priority class of a table for sync, 0 (first, e.g. alarms) to 9 (bulk); default 5. Repeatable.")
@click.option("--max-body", default="64MiB", show_default=True, callback=_size, envvar="HARBOUR_EDGE_MAX_BODY",
              help="Largest accepted request body; larger writes get 413.")
@click.option("--housekeeping-interval", default="1s", callback=_duration, hidden=True,
              envvar="HARBOUR_EDGE_HOUSEKEEPING_INTERVAL")
@click.option("--log-level", default="INFO", show_default=True, envvar="HARBOUR_EDGE_LOG_LEVEL",
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def run(site: str, data_dir: Path, listen: str, hub_url: str | None, token: str | None, token_file: Path | None,
        max_disk: int, seal_size: int, seal_age: float, retention: float, priorities: tuple[str, ...],
        max_body: int, housekeeping_interval: float, log_level: str) -> None:
    """Run a ship's edge node: the ingest API for on-board applications (POST /v1/tables/TABLE,
    GET /v1/status, GET /healthz). A write is answered 200 only once its rows are on disk (fsync)."""
    from .runner import RunOptions, run_node

    host, port = _listen(listen)
    if token_file is not None:
        token = token_file.read_text().strip().splitlines()[0] if token_file.read_text().strip() else None
    parsed: dict[str, int] = {}
    for item in priorities:
        table, _, level = item.partition("=")
        if not level.isdigit() or not 0 <= int(level) <= 9:
            raise click.BadParameter(f"{item!r} is not TABLE=N with N from 0 to 9", param_hint="--priority")
        parsed[table] = int(level)
    run_node(RunOptions(site, data_dir, host, port, hub_url, token, max_disk, seal_size, seal_age, retention,
                        parsed, max_body, housekeeping_interval, log_level.upper()))


@edge.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The edge node's data directory (works while the node runs).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(data_dir: Path, fmt: str) -> None:
    """Per table: pending rows/bytes/segments, parked, acked, age of the oldest pending row."""
    from .runner import offline_status
    from .status import render_text

    report = offline_status(data_dir, time.time)
    click.echo(json.dumps(report, indent=2) if fmt == "json" else render_text(report))


@edge.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The edge node's data directory (works while the node runs, and offline).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.argument("sql")
def query(data_dir: Path, fmt: str, sql: str) -> None:
    """Run SQL (DuckDB) over this ship's own data: every edge table is a view of the same name, with
    sealed segments and rows still in the write-ahead log, plus the lineage column _site."""
    import duckdb

    from .query import run_query
    from .runner import render_result

    try:
        result = run_query(data_dir, sql)
    except duckdb.Error as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    click.echo(render_result(result, fmt), nl=False)
