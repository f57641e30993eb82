"""The fleet page's reading of a fleet report: which ships are fine, behind, silent or need a person.

Pure: takes the report (``hub.status.fleet_report``) and gives one ``ShipView`` per site plus fleet
totals. The thresholds are named here so that the page, its docs and its tests agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SILENT_AFTER_SECONDS = 10 * 60.0
"""An edge with a running sync agent reports every 30 s; ten minutes without any contact is twenty
missed reports: the ship is offline (or its edge is down), and an operator should know."""

BEHIND_AFTER_SECONDS = 3_600.0
"""A ship whose oldest unsynced data is older than an hour is behind, whatever its link says."""

BEHIND_BACKLOG_BYTES = 256 * 1024 * 1024
"""For edges that do not report the age of their oldest pending data: 256 MiB waiting is hours of a
satellite link, so the ship is behind."""

# States, worst first: the default order of the table, and the text shown next to each ship.
SILENT, ATTENTION, BEHIND, OK = "silent", "attention", "behind", "ok"
STATE_RANK = {SILENT: 0, ATTENTION: 1, BEHIND: 2, OK: 3}
STATE_LABEL = {SILENT: "Silent", ATTENTION: "Needs attention", BEHIND: "Behind", OK: "OK"}


@dataclass(frozen=True)
class Flag:
    state: str
    text: str  # says why, in words: the page never relies on colour alone


@dataclass(frozen=True)
class ShipView:
    site: dict  # the site's entry in the fleet report
    state: str
    flags: tuple[Flag, ...]
    seconds_since_contact: float | None
    backlog: dict | None
    rows_merged: int
    rows_merged_today: int
    missing_segments: int
    chain_breaks: int
    quarantined: int
    downlink: dict | None = None  # hub.downlink.ship_status; None on a report made without the downlink

    @property
    def name(self) -> str:
        return self.site["site"]

    @property
    def downlink_summary(self) -> str:
        """The downlink column: ``in sync``, what is pending, or ``none`` when nothing is offered or managed."""
        if not self.downlink:
            return "none"
        pending = [name for name, d in self.downlink["datasets"].items() if d["state"] != "in sync"]
        settings = self.downlink["settings"]["state"]
        parts = [f"{len(pending)} dataset(s) pending"] if pending else []
        if settings and settings[0] != "in sync":
            parts.append(f"settings {settings[0]}")
        parts += [line.split(":")[0] for line in settings[1:2]]  # "pinned locally" or "refused", once
        if parts:
            return ", ".join(parts)
        return "in sync" if self.downlink["datasets"] or settings else "none"


@dataclass(frozen=True)
class FleetView:
    ships: tuple[ShipView, ...]
    merge_lag_seconds: float
    generated_at: str
    totals: dict = field(default_factory=dict)


def age_text(seconds: float | None) -> str:
    """``42 s``, ``5 min``, ``3 h 10 min``, ``4 d 2 h``: how long ago, for people."""
    if seconds is None:
        return "never"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86_400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(seconds // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _flags(site: dict, since: float | None, missing: int, breaks: int, backlog: dict | None) -> list[Flag]:
    flags = []
    if not site["registered"]:
        flags.append(Flag(ATTENTION, "not registered (revoked or unknown site)"))
    refused = site.get("seconds_since_token_refused")
    if refused is not None and refused <= SILENT_AFTER_SECONDS:
        flags.append(Flag(ATTENTION, f"token refused by the hub {age_text(refused)} ago: rotate it (`harbour "
                                     f"hub add-site {site['site']} --rotate`) and put it in the ship's --token-file"))
    elif since is None:
        flags.append(Flag(SILENT, "never in contact"))
    elif since > SILENT_AFTER_SECONDS:
        flags.append(Flag(SILENT, f"no contact for {age_text(since)}"))
    if site["quarantined"]:
        count = len(site["quarantined"])
        flags.append(Flag(ATTENTION, f"{count} segment(s) quarantined (`harbour hub quarantine list`)"))
    if missing:
        flags.append(Flag(ATTENTION, f"{missing} segment(s) missing (gaps)"))
    if breaks:
        flags.append(Flag(ATTENTION, f"{breaks} chain break(s)"))
    refused = ((site.get("downlink") or {}).get("settings") or {}).get("refused") or {}
    if refused:
        flags.append(Flag(ATTENTION, "managed setting(s) refused on board: " + "; ".join(
            f"{key} ({reason})" for key, reason in sorted(refused.items()))))
    if backlog:
        if backlog["parked_segments"]:
            flags.append(Flag(ATTENTION, f"{backlog['parked_segments']} segment(s) parked on the ship"))
        oldest = backlog["oldest_pending_seconds"]
        if oldest is not None and oldest > BEHIND_AFTER_SECONDS:
            flags.append(Flag(BEHIND, f"oldest unsynced data {age_text(oldest)} old"))
        elif oldest is None and backlog["backlog_bytes"] >= BEHIND_BACKLOG_BYTES:
            flags.append(Flag(BEHIND, "large backlog on board"))
        if backlog["link_state"] == "down":
            flags.append(Flag(BEHIND, "link down"))
    return flags


def ship_view(site: dict) -> ShipView:
    tables = site["tables"].values()
    missing = sum(b - a + 1 for t in tables for a, b in t["gaps"])
    breaks = sum(len(t["chain_breaks"]) for t in tables)
    since = site["seconds_since_contact"]
    backlog = site.get("backlog")
    flags = tuple(_flags(site, since, missing, breaks, backlog))
    state = min((f.state for f in flags), key=STATE_RANK.__getitem__, default=OK)
    return ShipView(
        site=site, state=state, flags=flags, seconds_since_contact=since, backlog=backlog,
        rows_merged=sum(t["rows_merged"] for t in tables), rows_merged_today=site.get("rows_merged_today", 0),
        missing_segments=missing, chain_breaks=breaks, quarantined=len(site["quarantined"]),
        downlink=site.get("downlink"),
    )


def fleet_view(report: dict) -> FleetView:
    ships = tuple(sorted((ship_view(s) for s in report["sites"]), key=lambda v: (STATE_RANK[v.state], v.name)))
    totals = {
        "ships": len(ships),
        **{state: sum(1 for v in ships if v.state == state) for state in STATE_RANK},
        "rows_merged_today": sum(v.rows_merged_today for v in ships),
        "rows_merged": sum(v.rows_merged for v in ships),
        "backlog_bytes": sum(v.backlog["backlog_bytes"] for v in ships if v.backlog),
        "quarantined": sum(v.quarantined for v in ships),
        "missing_segments": sum(v.missing_segments for v in ships),
    }
    return FleetView(ships, report["merge_lag_seconds"], report["generated_at"], totals)
