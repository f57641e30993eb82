"""``harbour hub publish``, ``harbour hub datasets`` and ``harbour hub configure``: the downlink for operators.

``publish`` makes a file the next version of a reference dataset for every ship or the listed ones
(``hub.datasets``); ``datasets`` lists them and what each ship holds; ``configure`` sets the edge settings head
office manages (``hub.managed_settings``). All three work while ``hub run`` serves the same places: a running hub
offers a new version or setting in its answer to each ship's next report.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from sync_protocol.errors import RemoteProtocolError
from sync_protocol.identifiers import SiteId, TableName
from sync_protocol.units import format_size

ALL = "all"


def _dataset_name(ctx, param, value: str) -> TableName:
    try:
        return TableName(value)
    except RemoteProtocolError as error:
        raise click.BadParameter(error.message) from None


def _ship_list(ctx, param, value: str | None) -> tuple[SiteId, ...] | None:
    if value is None:
        return None
    try:
        ships = tuple(SiteId(part.strip()) for part in value.split(",") if part.strip())
    except RemoteProtocolError as error:
        raise click.BadParameter(error.message) from None
    if not ships:
        raise click.BadParameter("name at least one ship, e.g. --ships ship-1,ship-2 (leave it out for every ship)")
    return ships


def _require_registered(ships, registry) -> None:
    known = {row["site"] for row in registry.sites()}
    unknown = sorted(str(s) for s in ships if str(s) not in known)
    if unknown:
        raise click.ClickException(
            f"unknown ship(s): {', '.join(unknown)}; registered: {', '.join(sorted(known)) or 'none'} "
            "(`harbour hub add-site SITE` registers one)")


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


PROGRESS_SECONDS = 2.0
"""A conversion that takes longer than this says how far it got, every this often (a 2 GiB one takes minutes)."""


def _progress_printer():
    last = [time.monotonic()]

    def show(rows: int, size: int) -> None:
        if time.monotonic() - last[0] >= PROGRESS_SECONDS:
            last[0] = time.monotonic()
            click.echo(f"  ... {rows:,} rows, {format_size(size)} written", err=True)

    return show


def publish_version(layout, database, name: TableName, file: Path, ships, fmt: str) -> int:
    """Convert ``file`` and make it the next version of ``name``; progress to stderr, the version returned."""
    from .dataset_files import DatasetFileError, convert
    from .datasets import DatasetStore
    from .registry import SiteRegistry

    registry = SiteRegistry(database, time.time)
    if ships is not None:
        _require_registered(ships, registry)
    store = DatasetStore(database, layout.datasets, time.time)
    if not file.is_file():
        raise click.ClickException(f"{file} is not a file")
    click.echo(f"converting {file} ({format_size(file.stat().st_size)}) to an Arrow IPC stream ...", err=True)
    try:
        converted = convert(file, store.staging_file(secrets.token_hex(8)), fmt, _progress_printer())
    except DatasetFileError as error:
        raise click.ClickException(str(error)) from None
    try:
        version, pruned = store.publish(name, converted, ships, [row["site"] for row in registry.sites()])
    except RemoteProtocolError as error:
        raise click.ClickException(str(error)) from None
    finally:
        converted.path.unlink(missing_ok=True)  # gone already once it became a version
    audience = "every ship" if version.ships is None else ", ".join(version.ships)
    click.echo(f"published {name} version {version.version} ({converted.source_format}): {version.rows} rows, "
               f"{version.columns} columns, {format_size(version.size)}, sha256 {version.sha256[:16]}..., "
               f"for {audience}", err=True)
    if pruned:
        click.echo(f"pruned {name} version(s) {', '.join(map(str, pruned))} (no ship is offered them any more)",
                   err=True)
    return version.version


def datasets_report(store, reports, sites: list[str]) -> dict:
    """Every dataset with its versions, per ship (from its last report) the version it holds and since when, and
    the registered ships (``sites``) that do not hold the newest version offered to them yet (``waiting``)."""
    held: dict[str, dict[str, int]] = {}
    since: dict[str, dict[str, str | None]] = {}
    first_reported = store.held_since()
    for site, stored in reports.latest().items():
        if stored.report.downlink is not None:
            for name, version in stored.report.downlink.datasets.items():
                held.setdefault(name, {})[site] = version
                since.setdefault(name, {})[site] = _iso(first_reported.get((site, name, version)))
    datasets: dict[str, dict] = {}
    for v in store.versions():
        entry = datasets.setdefault(v.name, {"name": v.name, "versions": [], "ships": held.get(v.name, {}),
                                             "held_since": since.get(v.name, {})})
        entry["versions"].append({
            "version": v.version, "size": v.size, "rows": v.rows, "sha256": v.sha256, "source_format": v.source_format,
            "published_at": _iso(v.published_at), "ships": ALL if v.ships is None else list(v.ships),
            "pruned_at": _iso(v.pruned_at)})
    for site, offers in store.offers_by_site(sites).items():
        for offer in offers:
            if held.get(offer.name, {}).get(site, 0) < offer.version:
                datasets[offer.name].setdefault("waiting", {})[site] = offer.version
    for entry in datasets.values():
        entry.setdefault("waiting", {})
    return {"datasets": list(datasets.values())}


def format_datasets(report: dict) -> str:
    if not report["datasets"]:
        return "no datasets published yet (`harbour hub publish DATASET FILE` publishes one)"
    lines = []
    for dataset in report["datasets"]:
        lines.append(f"{dataset['name']}")
        for v in reversed(dataset["versions"]):
            ships = ALL if v["ships"] == ALL else ",".join(v["ships"])
            state = f"pruned {v['pruned_at']}" if v["pruned_at"] else "offered"
            lines.append(f"  v{v['version']:<5} {format_size(v['size']):>10} {v['rows']:>9} rows  "
                         f"sha256 {v['sha256'][:12]}  {v['published_at']}  ships {ships}  {state}")
        held, since = dataset["ships"], dataset["held_since"]
        lines.append("  held: " + (", ".join(f"{site} v{version}" + (f" (since {since[site]})" if since.get(site)
                                                                     else "")
                                             for site, version in sorted(held.items()))
                                   or "no ship has reported holding it yet"))
        if dataset["waiting"]:
            lines.append("  waiting for: " + ", ".join(f"{site} (v{version})"
                                                       for site, version in sorted(dataset["waiting"].items())))
    return "\n".join(lines)


def _sites(ctx, param, values: tuple[str, ...]) -> tuple[SiteId, ...]:
    try:
        return tuple(SiteId(value) for value in values)
    except RemoteProtocolError as error:
        raise click.BadParameter(error.message) from None


def _assignments(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    from .managed_settings import SettingError, parse_assignment

    try:
        return dict(parse_assignment(value) for value in values)
    except SettingError as error:
        raise click.BadParameter(str(error)) from None


def _keys(ctx, param, values: tuple[str, ...]) -> tuple[str, ...]:
    from .managed_settings import SettingError, check_key

    try:
        return tuple(check_key(value) for value in values)
    except SettingError as error:
        raise click.BadParameter(str(error)) from None


def format_ship_settings(ship, changed: bool, reported) -> str:
    """What one ship will be asked to run with, each value with where it comes from, and what it last reported."""
    head = f"{ship.site}  revision {ship.revision}" + (" (changed)" if changed else "")
    lines = [head]
    for key, value in ship.values.items():
        source = "all ships" if ship.sources[key] == "*" else ship.site
        lines.append(f"  {key} = {value}    [{source}]")
    if not ship.values:
        lines.append("  (no managed settings: the ship runs with its own)")
    if reported is not None:
        lines += [f"  pinned locally on board: {key}={value}" for key, value in sorted(reported.pinned.items())]
        lines += [f"  refused on board: {key} {reason}" for key, reason in sorted(reported.refused.items())]
    return "\n".join(lines)


def register(hub: click.Group, data_option, existing, open_database) -> None:
    """Add ``publish``, ``datasets`` and ``configure`` to ``hub``."""

    @hub.command()
    @click.argument("dataset", callback=_dataset_name)
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @data_option
    @click.option("--ships", callback=_ship_list, metavar="SITE,...",
                  help="offer this version only to these ships [default: every ship]")
    @click.option("--input-format", "fmt", default="auto", show_default=True,
                  type=click.Choice(["auto", "parquet", "arrow-file", "arrow-stream", "csv", "jsonl"]),
                  help="FILE's format; auto tells them apart by magic bytes, then by extension (not --format: "
                  "HARBOUR_HUB_FORMAT is the output format of status, query and datasets)")
    def publish(dataset: TableName, file: Path, data, ships, fmt: str) -> None:
        """Make FILE (Parquet, CSV, Arrow IPC file or stream, JSON Lines) the next version of DATASET and print
        the version number. Ships fetch it after their next report; older versions are pruned (docs/downlink.md)."""
        database = open_database(existing(data))
        try:
            click.echo(publish_version(data, database, dataset, file, ships, fmt))
        finally:
            database.close()

    @hub.command("datasets")
    @data_option
    @click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
    def datasets_command(data, fmt: str) -> None:
        """Every dataset, its versions (size, sha256, published, ships) and the version each ship holds."""
        from .datasets import DatasetStore
        from .registry import SiteRegistry
        from .site_reports import SiteReportStore

        layout = existing(data)
        database = open_database(layout)
        try:
            sites = [row["site"] for row in SiteRegistry(database, time.time).sites() if row["revoked_at"] is None]
            report = datasets_report(DatasetStore(database, layout.datasets, time.time),
                                     SiteReportStore(database, time.time), sites)
        finally:
            database.close()
        click.echo(json.dumps(report, indent=1) if fmt == "json" else format_datasets(report))

    @hub.command()
    @click.argument("sites", nargs=-1, callback=_sites, metavar="[SITE]...")
    @data_option
    @click.option("--all", "all_ships", is_flag=True, help="every ship, also ships registered later")
    @click.option("--set", "set_values", multiple=True, callback=_assignments, metavar="KEY=VALUE",
                  help="a managed setting, named as the edge's flag (repeatable)")
    @click.option("--unset", multiple=True, callback=_keys, metavar="KEY",
                  help="stop managing KEY here (a ship falls back to the --all value, or its own; repeatable)")
    def configure(sites: tuple[SiteId, ...], data, all_ships: bool, set_values: dict[str, str],
                  unset: tuple[str, ...]) -> None:
        """Set the sync settings head office manages for SITE... or --all ships; print what each will run with.

        KEY is one of the edge's own flags: priority (NAME=N,...), thin-link-below, thin-link-max-class, metered,
        max-upload-rate, seal-size, seal-age. A ship's own value wins over --all; a flag, variable or config file
        set on board wins over both and is shown as pinned. Without --set/--unset, only prints.
        """
        from .managed_settings import ALL_SHIPS, SettingsStore
        from .registry import SiteRegistry
        from .site_reports import SiteReportStore

        if all_ships == bool(sites):
            raise click.UsageError("name the ships (SITE...) or give --all, one of the two")
        both = sorted(set(set_values) & set(unset))
        if both:
            raise click.UsageError(f"{', '.join(both)} is both --set and --unset: give one")
        database = open_database(existing(data))
        try:
            registry = SiteRegistry(database, time.time)
            _require_registered(sites, registry)
            registered = [row["site"] for row in registry.sites()]
            store = SettingsStore(database, time.time)
            scopes = [ALL_SHIPS] if all_ships else [str(site) for site in sites]
            changed = store.configure(scopes, set_values, unset) if set_values or unset else []
            shown = registered if all_ships else scopes
            reports = SiteReportStore(database, time.time).latest()
            ships = store.for_ships(shown)
        finally:
            database.close()
        if not shown:
            click.echo("no ship is registered yet; these settings apply to each one registered later", err=True)
        for site in shown:
            stored = reports.get(site)
            click.echo(format_ship_settings(ships[site], ALL_SHIPS in changed or site in changed,
                                            stored.report.downlink if stored else None))
