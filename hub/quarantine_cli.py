"""`harbour hub quarantine`: the segments the merger set aside, their rows, and a way back once fixed.

A quarantined segment keeps its file (``DIR/quarantine/``) and its reason in the ledger. ``release`` puts the
file back where the merger reads it and moves the segment from ``quarantined`` back to ``committed``
(``MergeEvent.RELEASED``): a running hub merges it within its idle poll, through the normal path -- exactly
once, by the Delta batch id -- or sets it aside again with the new reason if it still does not fit. Without a
running hub, the next ``hub run`` does it.
"""

from __future__ import annotations

import time

import click
import pyarrow.parquet as pq

from sync_protocol.errors import RemoteProtocolError
from sync_protocol.identifiers import SegmentId

DEFAULT_SHOW_ROWS = 20


def segment_argument(text: str) -> SegmentId:
    """``SITE/TABLE/SEQ`` as `list` prints it (``SITE.TABLE.SEQ``, the upload key, works too)."""
    try:
        if "/" in text:
            site, table, seq = text.split("/")
            return SegmentId.of(site, table, int(seq))
        return SegmentId.from_upload_key(text)
    except (ValueError, RemoteProtocolError) as error:
        raise click.BadParameter(f"{text!r} is not SITE/TABLE/SEQ ({error})", param_hint="SEGMENT") from None


def show_id(segment: SegmentId) -> str:
    return f"{segment.site}/{segment.table}/{segment.seq}"


def list_quarantine(ledger) -> str:
    entries = ledger.quarantined()
    if not entries:
        return "nothing is quarantined"
    lines = [f"{len(entries)} quarantined segment(s); see one with `show SEGMENT`, merge again with `release`:"]
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(entry.at)) if entry.at else "?"
        lines.append(f"  {show_id(entry.segment)}  (since {when})  {entry.reason}")
    return "\n".join(lines)


def show_rows(layout, segment: SegmentId, limit: int, fmt: str) -> str:
    from .query import QueryResult, format_result

    path = layout.quarantined_file(segment)
    if not path.exists():
        raise click.ClickException(f"{show_id(segment)} is not quarantined here (no {path}); see `quarantine list`")
    try:
        parquet = pq.ParquetFile(path)
        table = parquet.read().slice(0, limit)
    except Exception as error:  # a file that cannot be read is a common reason for the quarantine itself
        raise click.ClickException(f"{path} cannot be read as Parquet: {error}") from None
    result = QueryResult(table.column_names, [tuple(row.values()) for row in table.to_pylist()])
    total = parquet.metadata.num_rows
    note = f"\n({total} rows in the segment; showing {min(limit, total)}: --limit N for more)" if total > limit else ""
    return format_result(result, fmt) + (note if fmt == "table" else "")


def release(ledger, staging, segments: list[SegmentId]) -> list[str]:
    """Release each segment; returns one line per segment for the operator."""
    from sync_protocol.errors import LocalProtocolError

    lines = []
    for segment in segments:
        try:
            staging.unquarantine(segment)
            ledger.release_quarantined(segment)
        except (KeyError, LocalProtocolError, FileNotFoundError) as error:
            raise click.ClickException(f"{show_id(segment)} cannot be released: {error}; see `quarantine list`"
                                       ) from None
        lines.append(f"released {show_id(segment)}: it merges within seconds on a running hub")
    return lines


def register(hub: click.Group, data_option, existing) -> None:
    """Add the `quarantine` command to ``hub`` (``existing(data)`` opens a hub that must exist)."""

    @hub.command()
    @data_option
    @click.argument("action", type=click.Choice(["list", "show", "release"]), default="list")
    @click.argument("segments", nargs=-1, metavar="[SEGMENT]...")
    @click.option("--all", "release_all", is_flag=True, help="With release: every quarantined segment.")
    @click.option("--limit", type=click.IntRange(min=1), default=DEFAULT_SHOW_ROWS, show_default=True,
                  help="With show: at most this many rows.")
    @click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
                  help="With show: how to print the rows.")
    def quarantine(data, action: str, segments: tuple[str, ...], release_all: bool, limit: int,
                   fmt: str) -> None:
        """Segments the merger set aside: `list` them with their reasons, `show SEGMENT` its rows, `release
        SEGMENT... | --all` to merge them again once the cause is fixed (exactly once; a segment that still does
        not fit comes back with the new reason). SEGMENT is SITE/TABLE/SEQ as `list` prints it."""
        from .ledger import SqliteLedger
        from .staging import StagingArea

        layout = existing(data)
        database = layout.open_database()
        try:
            ledger = SqliteLedger(database, time.time)
            chosen = [segment_argument(text) for text in segments]
            if action == "list":
                click.echo(list_quarantine(ledger))
            elif action == "show":
                if len(chosen) != 1:
                    raise click.UsageError("`show` takes exactly one SEGMENT")
                click.echo(show_rows(layout, chosen[0], limit, fmt))
            else:
                if release_all == bool(chosen):
                    raise click.UsageError("`release` takes SEGMENT... or --all, one of the two")
                targets = [entry.segment for entry in ledger.quarantined()] if release_all else chosen
                for line in release(ledger, StagingArea(layout), targets) or ["nothing is quarantined"]:
                    click.echo(line)
        finally:
            database.close()
