"""What the fleet page's charts draw: per site, the reported backlog and the rows merged, over time.

The hub samples the fleet every ``HISTORY_SAMPLE_SECONDS`` into ``fleet_history`` (one small row per
site). The table stays bounded however long the hub runs: recent points are kept as sampled, older ones
are thinned to one per bucket (the latest in it), the oldest are dropped. With the tiers below a site
holds at most about 60 + 144 + 144 + 332 = 680 points, whatever the uptime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .db import LedgerDatabase, upsert

HISTORY_SAMPLE_SECONDS = 60.0
"""One point a minute: the finest detail an operator reads on a chart of hours, and a site's edge
reports only every 30 s anyway."""

THINNING = (
    (3_600.0, 600.0),  # older than an hour: one point per 10 minutes
    (86_400.0, 3_600.0),  # older than a day: one per hour
    (7 * 86_400.0, 6 * 3_600.0),  # older than a week: one per 6 hours
)
"""(older than, keep one point per) in seconds: the further back, the coarser a chart needs to be."""

MAX_HISTORY_SECONDS = 90 * 86_400.0
"""A quarter: enough to compare this voyage with the last; older points are deleted."""


_RECORD = upsert("fleet_history", ["site", "at", "backlog_bytes", "rows_merged"], ["site", "at"])


@dataclass(frozen=True)
class Point:
    at: float
    backlog_bytes: int | None  # None: the site's edge had not reported (yet)
    rows_merged: int


class FleetHistory:
    """The ``fleet_history`` table: record samples, thin them, read a site's series."""

    def __init__(self, database: LedgerDatabase, clock: Callable[[], float]) -> None:
        self._database = database
        self._clock = clock
        if "fleet_history" not in database.tables():
            with database.write() as db:  # one process at a time: concurrent CREATEs collide on PostgreSQL
                db.execute(
                    "CREATE TABLE IF NOT EXISTS fleet_history (site TEXT NOT NULL, at REAL NOT NULL,"
                    " backlog_bytes INTEGER, rows_merged INTEGER NOT NULL, PRIMARY KEY (site, at))"
                )

    def record(self, samples: Iterable[tuple[str, int | None, int]]) -> None:
        """Store one point per ``(site, backlog_bytes, rows_merged)`` at the clock's now, then thin."""
        now = self._clock()
        with self._database.write() as db:
            for site, backlog, rows in samples:
                db.execute(_RECORD, [site, now, backlog, rows])
            self._thin(db, now)

    def record_report(self, report: dict) -> None:
        """Sample a fleet report (``hub.status.fleet_report``)."""
        self.record(
            (site["site"], site["backlog"]["backlog_bytes"] if site.get("backlog") else None,
             sum(t["rows_merged"] for t in site["tables"].values()))
            for site in report["sites"]
        )

    @staticmethod
    def _thin(db, now: float) -> None:
        db.execute("DELETE FROM fleet_history WHERE at < ?", [now - MAX_HISTORY_SECONDS])
        for older_than, bucket in THINNING:
            cutoff = now - older_than
            # Keep the newest point of each (site, bucket) older than the cutoff; (site, at) is the key.
            db.execute(
                "DELETE FROM fleet_history WHERE at < ? AND (site, at) NOT IN (SELECT site, MAX(at) FROM"
                " fleet_history WHERE at < ? GROUP BY site, CAST(at / ? AS INTEGER))",
                [cutoff, cutoff, bucket],
            )

    def series(self, site: str, since: float) -> list[Point]:
        rows = self._database.db.execute(
            "SELECT at, backlog_bytes, rows_merged FROM fleet_history WHERE site = ? AND at >= ? ORDER BY at",
            [site, since],
        ).fetchall()
        return [Point(*row) for row in rows]

    def count(self, site: str) -> int:
        return self._database.db.execute("SELECT COUNT(*) FROM fleet_history WHERE site = ?", [site]).fetchone()[0]
