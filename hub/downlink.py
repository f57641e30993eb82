"""The downlink at the hub: a ship's desired state (answered to its report) and how far the ship has got.

``desired_state`` is what ``PUT /v1/sync/sites/{site}/report`` answers (``sync_protocol.downlink.DesiredState``):
the newest version of every dataset offered to the ship and the settings head office manages for it. ``None``
(answered ``204``) when nothing is offered and nothing was ever managed for the ship.

``ship_status`` compares that with the ship's last report (``ReportedDownlink``) for ``/v1/fleet``, the fleet page
and ``harbour hub status``: per dataset the version held against the newest offered; for the settings one line per
fact -- ``in sync``, ``pending`` (the ship's revision is behind the hub's), ``pinned locally: KEY=VALUE``,
``refused: KEY reason``. Pure: stores and reports in, a dict out.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync_protocol.downlink import DatasetOffer, DesiredState, ReportedDownlink

from .datasets import DatasetStore
from .managed_settings import SettingsStore, ShipSettings

IN_SYNC, PENDING, NOT_REPORTED = "in sync", "pending", "not reported"


@dataclass(frozen=True)
class Downlink:
    datasets: DatasetStore
    settings: SettingsStore

    def desired_state(self, site: str) -> DesiredState | None:
        offers = self.datasets.offers(site)
        managed = self.settings.for_ship(site).managed
        if not offers and managed is None:
            return None
        return DesiredState(offers, managed)

    def fleet_status(self, reported: dict[str, ReportedDownlink | None]) -> dict[str, dict]:
        """``ship_status`` of every site in ``reported`` (None: no downlink part in its last report)."""
        offers = self.datasets.offers_by_site(reported)
        settings = self.settings.for_ships(reported)
        return {site: ship_status(offers[site], settings[site], reported[site]) for site in reported}


def ship_status(offers: tuple[DatasetOffer, ...], settings: ShipSettings, reported: ReportedDownlink | None) -> dict:
    held = reported.datasets if reported is not None else {}
    datasets = {}
    for offer in offers:
        version = held.get(offer.name)
        datasets[offer.name] = {"offered": offer.version, "held": version,
                                "state": IN_SYNC if version is not None and version >= offer.version else PENDING}
    for name, version in held.items():  # held, but no longer offered (retargeted elsewhere)
        datasets.setdefault(name, {"offered": None, "held": version, "state": IN_SYNC})
    return {"datasets": dict(sorted(datasets.items())), "settings": _settings_status(settings, reported)}


def _settings_status(settings: ShipSettings, reported: ReportedDownlink | None) -> dict:
    status = {"revision": settings.revision, "values": settings.values, "sources": settings.sources,
              "reported_revision": None, "applied": {}, "pinned": {}, "refused": {}, "state": []}
    if reported is None:
        status["state"] = [NOT_REPORTED] if settings.revision else []
        return status
    status.update(reported_revision=reported.settings_revision, applied=reported.applied, pinned=reported.pinned,
                  refused=reported.refused)
    lines = [IN_SYNC if reported.settings_revision >= settings.revision else PENDING]
    lines += [f"pinned locally: {key}={value}" for key, value in sorted(reported.pinned.items())]
    lines += [f"refused: {key} {reason}" for key, reason in sorted(reported.refused.items())]
    status["state"] = lines
    return status
