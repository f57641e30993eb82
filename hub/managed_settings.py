"""Managed edge settings at the hub: what head office asks each ship to run with (``harbour hub configure``).

Values are stored per scope: ``*`` (``--all``: every ship, also ships registered later) or one site. A ship's
values are the ``*`` ones with its own on top (a per-site value overrides the fleet-wide one; unsetting it falls
back to the fleet-wide one). Every value is kept in the canonical text ``sync_protocol.downlink.normalise_setting``
gives, so a bad value never reaches a ship.

A ship's **revision** is the sum of two counters: the ``*`` scope's and its own. Each ``configure`` that changes a
scope's values bumps that scope's counter, so a ship's revision grows with every change that concerns it, and a
ship that reports a lower revision has not applied the latest (``pending``). Revision 0 means head office never
managed anything for it: the report answer then carries no settings at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sync_protocol.downlink import MANAGED_SETTINGS, ManagedSettings, normalise_setting

from .db import LedgerDatabase, create_tables, upsert

log = logging.getLogger("harbour.hub.settings")

ALL_SHIPS = "*"
"""The scope of ``configure --all``; a site id never is ``*``."""

TABLES = {
    "managed_settings": "scope TEXT NOT NULL, setting TEXT NOT NULL, value TEXT NOT NULL, changed_at REAL NOT NULL,"
                        " PRIMARY KEY (scope, setting)",
    "settings_revisions": "scope TEXT PRIMARY KEY, revision INTEGER NOT NULL",
}


class SettingError(ValueError):
    """A ``--set``/``--unset`` that cannot be stored; the message names the key and the rule."""


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> the key and its canonical value; ``SettingError`` naming the key and the rule."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SettingError(f"--set {text!r} is not KEY=VALUE (e.g. --set seal-size=32MiB)")
    try:
        return key, normalise_setting(key, value)
    except ValueError as error:
        raise SettingError(f"--set {key}: {error}") from None


def check_key(key: str) -> str:
    if key not in MANAGED_SETTINGS:
        raise SettingError(f"--unset {key!r}: not a managed setting; choose from {', '.join(MANAGED_SETTINGS)}")
    return key


@dataclass(frozen=True)
class ShipSettings:
    """What one ship is asked to run with, and where each value comes from (``*`` or the site)."""

    site: str
    revision: int
    values: dict[str, str]
    sources: dict[str, str]

    @property
    def managed(self) -> ManagedSettings | None:
        """The settings part of the ship's desired state. A stored value the rules no longer accept (a hub
        upgraded since it was set) is left out and logged: the hub's own data must never make a report fail."""
        if self.revision == 0:
            return None
        values = {}
        for key, value in self.values.items():
            try:
                values[key] = normalise_setting(key, value)
            except ValueError as error:
                log.error("managed setting %s=%r for %s is no longer valid (%s): not sent; run `harbour hub "
                          "configure` again", key, value[:80], self.site, error)
        return ManagedSettings(self.revision, values)


class SettingsStore:
    def __init__(self, database: LedgerDatabase, clock: Callable[[], float]) -> None:
        self._database = database
        self._clock = clock
        create_tables(database, TABLES)

    def configure(self, scopes: Sequence[str], set_values: Mapping[str, str], unset: Iterable[str]) -> list[str]:
        """Set and unset values (already canonical) in each scope, in one transaction; bumps the revision of every
        scope whose values changed. Returns those scopes."""
        unset = list(unset)
        changed = []
        now = self._clock()
        with self._database.write() as db:
            for scope in scopes:
                current = dict(db.execute("SELECT setting, value FROM managed_settings WHERE scope = ?",
                                          [scope]).fetchall())
                wanted = {k: v for k, v in current.items() if k not in unset} | dict(set_values)
                if wanted == current:
                    continue
                for key in set(current) - set(wanted):
                    db.execute("DELETE FROM managed_settings WHERE scope = ? AND setting = ?", [scope, key])
                for key, value in wanted.items():
                    if current.get(key) != value:
                        db.execute(upsert("managed_settings", ["scope", "setting", "value", "changed_at"],
                                          ["scope", "setting"]), [scope, key, value, now])
                revision = db.execute("SELECT revision FROM settings_revisions WHERE scope = ?", [scope]).fetchone()
                db.execute(upsert("settings_revisions", ["scope", "revision"], ["scope"]),
                           [scope, (revision[0] if revision else 0) + 1])
                changed.append(scope)
        return changed

    def for_ship(self, site: str) -> ShipSettings:
        with self._database.snapshot() as db:
            rows = db.execute("SELECT scope, setting, value FROM managed_settings WHERE scope IN (?, ?)",
                              [ALL_SHIPS, site]).fetchall()
            revisions = dict(db.execute("SELECT scope, revision FROM settings_revisions WHERE scope IN (?, ?)",
                                        [ALL_SHIPS, site]).fetchall())
        return _merged(site, rows, revisions)

    def for_ships(self, sites: Iterable[str]) -> dict[str, ShipSettings]:
        """``for_ship`` of many sites from one read (the fleet report asks for all of them)."""
        with self._database.snapshot() as db:
            rows = db.execute("SELECT scope, setting, value FROM managed_settings").fetchall()
            revisions = dict(db.execute("SELECT scope, revision FROM settings_revisions").fetchall())
        return {site: _merged(site, [r for r in rows if r[0] in (ALL_SHIPS, site)], revisions) for site in sites}


def _merged(site: str, rows: Sequence[Sequence], revisions: Mapping[str, int]) -> ShipSettings:
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for scope, key, value in sorted(rows, key=lambda r: r[0] != ALL_SHIPS):  # '*' first, the site's own on top
        values[key] = value
        sources[key] = scope
    revision = revisions.get(ALL_SHIPS, 0) + revisions.get(site, 0)
    return ShipSettings(site, revision, dict(sorted(values.items())), sources)
