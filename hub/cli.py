"""``harbour hub ...``: run the hub and manage its sites, operators, queries and status.

Every command takes ``--data DIR`` (or ``HARBOUR_HUB_DATA``) and creates DIR when it is new, so sites
can be registered before the first ``hub run``; all of them work while ``hub run`` serves the same DIR
(SQLite in WAL mode). Every command also takes the three places a hub cluster shares (``--ledger``,
``--staging``, ``--warehouse``; docs/scale-out.md), and then acts on the whole cluster from any machine.
``--config F`` and the ``HARBOUR_HUB_*`` environment variables are added to every
command by ``harbour_cli`` (``[hub]`` / ``[hub.run]`` tables); flags win over the environment, the
environment over the file.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from pathlib import Path

import click

from sync_protocol import log_hygiene
from sync_protocol.errors import RemoteProtocolError
from sync_protocol.identifiers import SiteId

from . import downlink_cli, quarantine_cli

DATA_HELP = "the hub's data directory (with the three shared places below: only what is local to this process)"
_PLACES = (
    click.option("--data", "data", required=True, help=DATA_HELP, type=click.Path(file_okay=False, path_type=Path)),
    click.option("--ledger", metavar="URL", help="a postgresql://USER@HOST:PORT/DB that every hub process of a "
                 "cluster shares [default: SQLite in --data]"),
    click.option("--staging", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
                 help="uploads in progress and published datasets, a directory every hub process shares "
                 "[default: DATA/uploads; datasets in DATA/datasets]"),
    click.option("--warehouse", metavar="DIR|s3://BUCKET/PREFIX",
                 help="the merged Delta tables: a directory every hub process shares, or an S3 prefix (credentials"
                 " and endpoint from the AWS_* environment variables) [default: DATA/tables]"),
)


def _data_option(command):
    """``--data`` and the cluster's shared places; the command receives them as one ``data`` (a ``HubLayout``
    describing where things are, nothing made yet)."""
    from .layout import HubLayout

    @functools.wraps(command)
    def with_layout(*args, data: Path, ledger: str | None, staging: Path | None, warehouse: str | None, **kwargs):
        try:
            layout = HubLayout.of(data, ledger=ledger, staging=staging, warehouse=warehouse)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        return command(*args, data=layout, **kwargs)

    for option in reversed(_PLACES):
        with_layout = option(with_layout)
    return with_layout


def _open(layout):
    """The ledger database of ``layout``; an unreachable PostgreSQL ledger is a clean CLI error."""
    from .db import LedgerUnavailable

    try:
        return layout.open_database()
    except LedgerUnavailable as error:
        raise click.ClickException(str(error)) from None


def _site(ctx, param, value: str) -> SiteId:
    try:
        return SiteId(value)
    except RemoteProtocolError as error:
        raise click.BadParameter(error.message) from None


def _listen(ctx, param, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (for example 0.0.0.0:8700)")
    return host.strip("[]"), int(port)


def _existing(data):
    """DIR's layout for a command that must not set up a hub (read-only or revoking): a typo is an error."""
    from .layout import HubNotFound

    try:
        return data.checked()
    except HubNotFound as error:
        raise click.ClickException(str(error)) from None


def _registry(data, action, *, sets_up: bool = False):
    """Run one registry action on DIR's database; a RegistryError becomes a clean CLI error. Only a command that
    ``sets_up`` (add-site, add-operator: operators register ships before the first start) makes a new hub in a
    DIR that has none, and it says so, so that a mistyped --data does not silently start a second, empty hub."""
    from .registry import RegistryError, SiteRegistry

    if sets_up:
        is_new = data.is_new
        layout = data.made()
        if is_new:
            click.echo(f"set up a new hub in {layout.root} (there was none); start it with "
                       f"`harbour hub run --data {layout.root}`", err=True)
    else:
        layout = _existing(data)
    database = _open(layout)
    try:
        return action(SiteRegistry(database, time.time))
    except RegistryError as error:
        raise click.ClickException(str(error)) from None
    finally:
        database.close()


@click.group()
def hub() -> None:
    """The harbour side: receives segments from every ship and merges them into fleet tables."""


@hub.command()
@_data_option
@click.option("--listen", default="127.0.0.1:8700", show_default=True, callback=_listen,
              help="HOST:PORT to serve on")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="PEM certificate")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="PEM private key")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def run(data, listen: tuple[str, int], tls_cert: Path | None, tls_key: Path | None, log_level: str) -> None:
    """Run the hub: tus ingest under /v1/sync, merger, /v1/fleet, /metrics, /healthz.

    Stops cleanly on SIGTERM or Ctrl-C; a hub killed any other way picks up where it was on restart.
    """
    from .db import LedgerUnavailable
    from .faults import CRASH_ENV, crash_hook
    from .server import HubAlreadyRunning, run_hub, ssl_context
    from .warehouse import WarehouseUnavailable

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log_hygiene.install(logging.getLogger().handlers, time.monotonic)  # no token in any log line
    try:
        tls = ssl_context(tls_cert, tls_key)
        crash = crash_hook(os.environ.get(CRASH_ENV))
    except (ValueError, OSError) as error:
        raise click.UsageError(str(error)) from None
    host, port = listen
    try:
        run_hub(data, host, port, tls=tls, clock=time.time, crash=crash)
    except (HubAlreadyRunning, LedgerUnavailable, WarehouseUnavailable) as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"cannot serve on {host}:{port}: {error}") from None


@hub.command("add-site")
@click.argument("site", callback=_site)
@_data_option
@click.option("--rotate", is_flag=True, help="replace the token of an existing site (the old one stops working)")
def add_site(site: SiteId, data, rotate: bool) -> None:
    """Register SITE and print its new token (the only line on stdout; the hub keeps only a hash)."""
    click.echo(_registry(data, lambda registry: registry.add_site(site, rotate=rotate), sets_up=True))


@hub.command("revoke-site")
@click.argument("site", callback=_site)
@_data_option
def revoke_site(site: SiteId, data) -> None:
    """Stop SITE's token working, at once (also in a running hub). Its data stays."""
    _registry(data, lambda registry: registry.revoke_site(site))
    click.echo(f"revoked site {site}; `harbour hub add-site {site} --rotate` issues a new token", err=True)


@hub.command("add-operator")
@click.argument("name")
@_data_option
@click.option("--rotate", is_flag=True, help="replace the token of an existing operator")
def add_operator(name: str, data, rotate: bool) -> None:
    """Create an operator token (for /v1/fleet) and print it as the only line on stdout."""
    click.echo(_registry(data, lambda registry: registry.add_operator(name, rotate=rotate), sets_up=True))


@hub.command("revoke-operator")
@click.argument("name", required=False)
@_data_option
@click.option("--token-file", type=click.File("r"), metavar="F",
              help="revoke the operator whose token is in F ('-' reads stdin) instead of naming them")
def revoke_operator(name: str | None, data, token_file) -> None:
    """Stop operator NAME's token working, at once (also in a running hub); their fleet page sessions end too.

    Give the NAME used with add-operator, or, for a leaked token whose owner is not known, --token-file with
    the token in it (a file, not an argument, so the token stays out of shell history and process lists).
    `harbour hub add-operator NAME --rotate` issues a new token afterwards.
    """
    if (name is None) == (token_file is None):
        raise click.UsageError("give the operator's NAME or --token-file F, one of the two")

    def revoke(registry) -> tuple[str, bool]:
        who = name if token_file is None else registry.operator_of_token(token_file.read().strip())
        return who, registry.revoke_operator(who)

    who, was_live = _registry(data, revoke)
    if was_live:
        click.echo(f"revoked operator {who}; `harbour hub add-operator {who} --rotate` issues a new token", err=True)
    else:
        click.echo(f"operator {who} was already revoked; nothing changed", err=True)


@hub.command()
@_data_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(data, fmt: str) -> None:
    """Per site and table: rows merged, watermark, gaps, last contact; the quarantine; per ship the dataset
    versions it holds against the newest offered, and whether it runs the managed settings."""
    from .datasets import DatasetStore
    from .downlink import Downlink
    from .ledger import SqliteLedger
    from .managed_settings import SettingsStore
    from .registry import SiteRegistry
    from .site_reports import SiteReportStore
    from .status import fleet_report, format_report

    layout = _existing(data)
    database = _open(layout)
    try:
        downlink = Downlink(DatasetStore(database, layout.datasets, time.time), SettingsStore(database, time.time))
        report = fleet_report(SqliteLedger(database, time.time), SiteRegistry(database, time.time), time.time,
                              SiteReportStore(database, time.time), downlink)
    finally:
        database.close()
    click.echo(json.dumps(report, indent=1) if fmt == "json" else format_report(report))


@hub.command()
@_data_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=300.0, show_default=True, metavar="SECONDS",
              help="stop the query after this long")
@click.argument("sql")
def query(data, fmt: str, timeout: float, sql: str) -> None:
    """Run read-only SQL over the merged tables (one per edge table; lineage columns _site, _seq, _ingested_at).

    Only reading statements (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN); files outside the tables cannot be read or
    written. Export with --format csv or json.
    """
    from .query import QueryError, format_result, run_query

    try:
        result = run_query(_existing(data), sql, timeout)
    except QueryError as error:
        raise click.ClickException(str(error)) from None
    click.echo(format_result(result, fmt))


quarantine_cli.register(hub, _data_option, _existing)
downlink_cli.register(hub, _data_option, _existing, _open)
