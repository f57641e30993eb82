"""``harbour edge ...``: run a ship's edge node, look at its status, query its local data.

Heavy imports (pyarrow, aiohttp, duckdb) happen inside the commands, so ``harbour --help`` stays fast.
Every option can also come from ``HARBOUR_EDGE_<OPTION>`` or the ``[edge]`` / ``[edge.run]`` table of a
TOML file given with ``--config`` (both added to every command by ``harbour_cli``); a flag wins over the
environment, the environment over the file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click


def _units(parser_name: str):
    """A click callback parsing with ``sync_protocol.units.<parser_name>``: the one spelling of sizes,
    durations and rates that the edge's flags, the hub's and the scenario files share."""

    def parse(_ctx: click.Context, param: click.Parameter, value: str | None):
        from sync_protocol import units

        try:
            return None if value is None else getattr(units, parser_name)(value)
        except ValueError as error:
            raise click.BadParameter(str(error), param=param) from None

    return parse


_size = _units("parse_size")
_duration = _units("parse_duration")
_rate = _units("parse_rate")


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8701; port 0 picks a free one)")
    return host, int(port)


@click.group()
def edge() -> None:
    """The ship side: durable local ingest for on-board applications, and the sync agent."""


@edge.command()
@click.option("--site", required=True,
              help="This ship's site id ([a-z0-9][a-z0-9-]{0,62}), as registered at the hub. A data directory "
              "belongs to one site for life.")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Data directory (created if new): write-ahead log, segments, ledger.")
@click.option("--listen", default="127.0.0.1:8701", show_default=True,
              help="HOST:PORT of the ingest API. Port 0 picks a free port (printed at start).")
@click.option("--hub", "hub_url", help="URL of the hub to sync to (http:// or https://). "
              "Without it the node keeps everything on board and syncs nothing.")
@click.option("--token", help="This site's hub token (prefer --token-file: "
              "command lines are visible to other users of the machine).")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="File holding the site's hub token (first line).")
@click.option("--max-disk", default="20GiB", show_default=True, callback=_size,
              help="Disk quota for the data directory (e.g. 20GiB, 500MB). When reached, writes get 507 and "
              "nothing stored is dropped; acked segments are collected early to make room.")
@click.option("--seal-size", default="64MiB", show_default=True, callback=_size,
              help="Seal a table's write-ahead log into a Parquet segment once it holds this much.")
@click.option("--seal-age", default="5m", show_default=True, callback=_duration,
              help="...or once its oldest row is this old (e.g. 30s, 5m), so quiet tables still sync soon.")
@click.option("--retention", default="7d", show_default=True, callback=_duration,
              help="Keep segments this long after the hub acknowledged them (for local queries), then delete.")
@click.option("--priority", "priorities", multiple=True, metavar="NAME=N",
              help="Priority class of a table (upload) or a reference dataset (download), 0 (first, e.g. alarms) "
              "to 9 (bulk); default 5 for a table, 3 for a dataset. Repeatable. Several may share one value: "
              "--priority offers=1,telemetry=0.")
@click.option("--max-body", default="64MiB", show_default=True, callback=_size,
              help="Largest accepted request body; larger writes get 413.")
@click.option("--housekeeping-interval", default="1s", callback=_duration, hidden=True)
@click.option("--report-interval", default="30s", callback=_duration, hidden=True,
              help="How often the node reports to the hub and learns its desired state (tests shorten it).")
@click.option("--hub-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="PEM file of a private CA that signed the hub's certificate (verification is always on).")
@click.option("--max-upload-rate", callback=_rate,
              help="Cap on sync upload bandwidth, in bits per second (e.g. 2Mbit, 512kbit), so that sync never "
              "starves the ship's other traffic. Default: no cap.")
@click.option("--metered/--unmetered", default=False, show_default=True,
              help="A metered link (at sea, every byte costs): only urgent classes are sent (--thin-link-max-class).")
@click.option("--thin-link-below", default="1Mbit", show_default=True, callback=_rate,
              help="A link measured below this rate counts as thin (a satellite link at sea) and gets the same "
              "policy as a metered one.")
@click.option("--thin-link-max-class", default=1, show_default=True, type=click.IntRange(0, 9),
              help="On a thin or metered link, only classes 0..N are sent; the rest wait for a good link (port).")
@click.option("--max-in-flight", default=64, show_default=True, type=click.IntRange(1, 256),
              help="Most segment uploads at once; the agent uses as many as the measured link needs (at least 3).")
@click.option("--seed", type=int,
              help="Seed of the node's randomness (the jitter of retries), to replay a run; the node logs the seed "
              "it used. Default: a fresh one.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def run(site: str, data_dir: Path, listen: str, hub_url: str | None, token: str | None, token_file: Path | None,
        max_disk: int, seal_size: int, seal_age: float, retention: float, priorities: tuple[str, ...],
        max_body: int, housekeeping_interval: float, report_interval: float, hub_ca: Path | None,
        max_upload_rate: float | None, metered: bool, thin_link_below: float, thin_link_max_class: int,
        max_in_flight: int, seed: int | None, log_level: str) -> None:
    """Run a ship's edge node: the ingest API for on-board applications (POST /v1/tables/TABLE,
    GET /v1/status, GET /healthz). A write is answered 200 only once its rows are on disk (fsync).

    With --hub and a token, the sync agent sends sealed segments to the hub whenever a link exists, most
    urgent class first, and deletes a segment only after the hub's durable acknowledgement (plus
    --retention)."""
    import secrets

    from .startup import StartupError, claim
    from .sync.contact import read_token_file

    host, port = _listen(listen)
    if token_file is not None:
        token = read_token_file(token_file)
    parsed: dict[str, int] = {}
    for item in (part for value in priorities for part in value.split(",") if part.strip()):
        table, _, level = item.strip().partition("=")
        if not level.isdigit() or not 0 <= int(level) <= 9:
            raise click.BadParameter(f"{item!r} is not NAME=N with N from 0 to 9", param_hint="--priority")
        parsed[table] = int(level)
    pinned = pinned_on_board(click.get_current_context())
    if hub_url:
        if not hub_url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{hub_url!r} is not an http:// or https:// URL", param_hint="--hub")
        if not token:
            raise click.UsageError("--hub needs the site's token: --token-file FILE (or --token, or "
                                   "HARBOUR_EDGE_TOKEN); `harbour hub add-site SITE` prints it")
    try:  # before the heavy imports below: a node already on DATA, or a taken port, is refused at once
        claimed = claim(data_dir, host, port, time.time, token=secrets.token_urlsafe(16))
    except StartupError as error:
        sys.exit(f"harbour edge run: {error}")
    from sync_protocol import RemoteProtocolError, SiteId

    from .config import EdgeConfig
    from .runner import run_node

    try:
        config = EdgeConfig(
            site=SiteId(site), data_dir=data_dir, seal_bytes=seal_size, seal_age_seconds=seal_age,
            max_disk_bytes=max_disk, retention_seconds=retention, priorities=parsed, max_body_bytes=max_body,
            housekeeping_interval=housekeeping_interval, log_level=log_level.upper(), hub_url=hub_url or None,
            hub_token=token if hub_url else None, hub_token_file=token_file if hub_url else None,
            hub_ca=hub_ca, max_upload_rate_bps=max_upload_rate,
            metered=metered, thin_below_bps=thin_link_below, thin_max_class=thin_link_max_class,
            max_in_flight=max_in_flight, seed=seed, pinned=pinned, report_seconds=report_interval)
    except (RemoteProtocolError, ValueError) as error:
        claimed.release()
        sys.exit(f"harbour edge run: {error}")
    run_node(config, claimed)


def pinned_on_board(ctx: click.Context) -> frozenset[str]:
    """The managed settings set on this ship -- flag, HARBOUR_EDGE_* or --config file, not a default: they win
    over the hub's (``edge_node.managed``)."""
    from .managed import CLI_PARAMETERS

    local = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT,
             click.core.ParameterSource.DEFAULT_MAP)
    return frozenset(key for key, name in CLI_PARAMETERS.items() if ctx.get_parameter_source(name) in local)


@edge.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The edge node's data directory (works while the node runs).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people, json for scripts (the same document as the node's /v1/status)")
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, metavar="SECONDS",
              help="How often --watch redraws.")
def status(data_dir: Path, fmt: str, watch: bool, interval: float) -> None:
    """What the ship still has to send, and how the link is doing.

    With a node running on DIR, asks it (link state, measured rate and round trip, last error in words, what
    is in flight, ETA or "waiting for a link"); otherwise reads the data directory and says why. Per table:
    pending rows/bytes/segments, parked, acked, age of the oldest pending row.
    """
    from .live_status import current_status
    from .status import render_text

    while True:
        report = current_status(data_dir, time.time)
        text = json.dumps(report, indent=2) if fmt == "json" else render_text(report)
        if not watch:
            click.echo(text)
            return
        click.clear()
        click.echo(f"{text}\n\n(every {interval:g} s; Ctrl-C stops)")
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


@edge.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The edge node's data directory (works while the node runs: the node makes the change).")
@click.option("--all", "release_all", is_flag=True, help="Release every parked segment.")
@click.argument("segments", nargs=-1, metavar="[SITE/TABLE/SEQ]...")
def release(data_dir: Path, release_all: bool, segments: tuple[str, ...]) -> None:
    """Send parked segments again, after fixing why the hub refused them (see `harbour edge status`):
    e.g. a rotated token, or a conflict an operator resolved at the hub. With a node running on DIR, the
    node itself releases them and sends them at once; otherwise the ledger is changed here, under DIR's
    lock. Nothing is deleted."""
    import os

    from sync_protocol import RemoteProtocolError

    from .dir_lock import RELEASE_COMMAND, LockHolder, this_host
    from .ledger import SegmentLedger
    from .release import NotParked, ReleaseError, segment_from_text
    from .release import release as release_segments

    if not release_all and not segments:
        raise click.UsageError("name the segments to release (as shown by `harbour edge status`), or --all")
    try:
        requested = None if release_all else [segment_from_text(text) for text in segments]
    except RemoteProtocolError as error:
        raise click.BadParameter(str(error), param_hint="SEGMENTS") from None
    holder = LockHolder(os.getpid(), this_host(), time.time(), RELEASE_COMMAND)
    try:
        released = release_segments(data_dir, requested, holder, lambda d: SegmentLedger(d, None, time.time))
    except NotParked as error:
        raise click.ClickException(f"{error} (see `harbour edge status --data {data_dir}`)") from None
    except ReleaseError as error:
        raise click.ClickException(str(error)) from None
    for segment, reason in released:
        click.echo(f"released {segment} (was parked: {reason or 'no reason recorded'})")
    if not released:
        click.echo("no parked segments")


@edge.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
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
