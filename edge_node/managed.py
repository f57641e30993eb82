"""Managed settings (issue 17): the sync settings head office sets for a ship, applied without a restart.

The hub's answer to a report may carry ``ManagedSettings`` (``sync_protocol.downlink``): a revision and values
for some of ``MANAGED_SETTINGS`` (the edge's own flag names). The ship runs with, for each of them:

1. its own value, when the option was set on board -- by flag, ``HARBOUR_EDGE_*`` or the ``--config`` file
   (``EdgeConfig.pinned``, filled from click's parameter sources): reported as *pinned*;
2. else the hub's value, when it has one and it is valid here: reported as *applied*; a value the node cannot
   take (e.g. a seal size the node's checks refuse) is reported as *refused* with the reason, and the
   node keeps its own;
3. else the node's default.

The last settings received are kept in ``DATA/managed-settings.json`` (written atomically), so a ship that
restarts at sea, offline, runs with what head office last asked for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sync_protocol import RemoteProtocolError
from sync_protocol.downlink import MANAGED_SETTINGS, ManagedSettings
from sync_protocol.units import format_rate, format_size, parse_duration, parse_rate, parse_size

from .config import EdgeConfig
from .datasets import write_atomically

log = logging.getLogger(__name__)

SETTINGS_FILE = "managed-settings.json"


def _priorities(text: str) -> dict[str, int]:
    return {name: int(level) for name, _, level in (item.partition("=") for item in text.split(","))}


def _format_priorities(values: dict[str, int]) -> str:
    return ",".join(f"{name}={level}" for name, level in sorted(values.items()))


def _format_rate(bps: float | None) -> str:
    return format_rate(bps) if bps else "none"


FIELDS: dict[str, tuple[str, Callable[[str], Any], Callable[[Any], str]]] = {
    "priority": ("priorities", _priorities, _format_priorities),
    "thin-link-below": ("thin_below_bps", parse_rate, format_rate),
    "thin-link-max-class": ("thin_max_class", int, str),
    "metered": ("metered", lambda text: text == "true", lambda value: "true" if value else "false"),
    "max-upload-rate": ("max_upload_rate_bps", parse_rate, _format_rate),
    "seal-size": ("seal_bytes", parse_size, format_size),
    "seal-age": ("seal_age_seconds", parse_duration, lambda seconds: f"{seconds:g}s"),
}
"""Managed setting -> (``EdgeConfig`` field, parse its canonical text, show the node's own value)."""
assert set(FIELDS) == set(MANAGED_SETTINGS), "every managed setting must map to an EdgeConfig field"

CLI_PARAMETERS = {
    "priority": "priorities", "thin-link-below": "thin_link_below", "thin-link-max-class": "thin_link_max_class",
    "metered": "metered", "max-upload-rate": "max_upload_rate", "seal-size": "seal_size", "seal-age": "seal_age",
}
"""Managed setting -> the parameter of ``harbour edge run`` whose source (flag, environment, config file)
pins it on board."""


@dataclasses.dataclass(frozen=True)
class SettingsOutcome:
    """What the ship runs with, as reported back to the hub (``ReportedDownlink``) and shown in status."""

    revision: int = 0
    applied: dict[str, str] = dataclasses.field(default_factory=dict)
    pinned: dict[str, str] = dataclasses.field(default_factory=dict)
    refused: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve(base: EdgeConfig, settings: ManagedSettings | None) -> tuple[EdgeConfig, SettingsOutcome]:
    """The config to run with: ``base`` (the node's own) with the hub's values where not pinned on board."""
    config = base
    applied, pinned, refused = {}, {}, {}
    values = settings.values if settings is not None else {}
    for key, text in sorted(values.items()):
        field_name, parse, show = FIELDS[key]
        if key in base.pinned:
            pinned[key] = show(getattr(base, field_name))
            continue
        try:
            config = dataclasses.replace(config, **{field_name: parse(text)})
        except (ValueError, RemoteProtocolError) as error:
            refused[key] = str(error)
            continue
        applied[key] = text
    return config, SettingsOutcome(settings.revision if settings else 0, applied, pinned, refused)


class SettingsKeeper:
    """Holds the node's own config and the last managed settings; ``apply`` hands the result to ``on_change``."""

    def __init__(self, base: EdgeConfig) -> None:
        self.base = base
        self.path = base.data_dir / SETTINGS_FILE
        self.settings = load(self.path)
        self.config, self.outcome = resolve(base, self.settings)
        self.on_change: Callable[[EdgeConfig], None] | None = None

    def apply(self, settings: ManagedSettings) -> None:
        """A report answer carried ``settings``: run with them from now on, and after a restart."""
        if self.settings is not None and settings == self.settings:
            return
        config, outcome = resolve(self.base, settings)
        write_atomically(self.path, json.dumps({"revision": settings.revision, "values": settings.values}).encode())
        self.settings, self.outcome = settings, outcome
        log.info("managed settings revision %d: applied %s; pinned on board %s; refused %s", settings.revision,
                 outcome.applied or "nothing", outcome.pinned or "nothing", outcome.refused or "nothing")
        if config != self.config:
            self.config = config
            if self.on_change is not None:
                self.on_change(config)


def load(path: Path) -> ManagedSettings | None:
    """The last settings received, or None (none yet, or a file that cannot be read: the node's own apply)."""
    try:
        doc = json.loads(path.read_bytes())
        return ManagedSettings(doc["revision"], doc["values"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, RemoteProtocolError) as error:
        log.warning("ignoring %s (%s): running with the node's own settings until the hub answers", path, error)
        return None
