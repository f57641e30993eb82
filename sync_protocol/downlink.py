"""The downlink's messages: what the hub wants a ship to hold, and what the ship says it holds.

The hub never connects to a ship (ships sit behind satellite NAT and are offline for days). The edge
already sends its backlog report every ``REPORT_SECONDS`` (``PUT /v1/sync/sites/{site}/report``); the hub
answers that report with the ship's *desired state* (as MiNiFi C2 answers an agent's heartbeat, or a
device shadow's "desired" document): the newest version of every reference dataset offered to the ship,
and the sync settings head office manages for it. The ship's next report carries its *reported state*:
the versions it holds and the settings it runs with, with the ones pinned on board named.

Wire forms (JSON, both directions read as hostile input: bounded, every field checked):

- report answer ``200 application/json``::

      {"downlink": {"datasets": [{"name": "offers", "version": 3, "sha256": "<64 hex>", "size": 123}],
                    "settings": {"revision": 2, "values": {"priority": "offers=1,telemetry=0"}}}}

  ``204`` (an older hub, or nothing offered) means "no change to the desired state".
- report body, key ``downlink``::

      {"datasets": {"offers": 3}, "settings": {"revision": 2, "applied": {...}, "pinned": {...},
                                                "refused": {"seal-size": "reason"}}}

- a version's bytes: ``GET DATASET_VERSION_PATH`` with the site's token, ``Range: bytes=N-`` to resume
  (``206`` + ``Content-Range``); ``ETag`` is ``"sha256:<hex>"``; the body is always an Arrow IPC *stream*
  (the hub converts whatever was published), so the ship stores and serves exactly the published bytes.
  ``404`` for a version this ship was never offered, ``410`` for one pruned since: ask again, the next
  report answer offers the newer one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ErrorCode, RemoteProtocolError
from .identifiers import TableName
from .limits import MAX_PRIORITY_CLASS
from .units import parse_duration, parse_rate, parse_size

DATASET_VERSION_PATH = "/v1/sync/datasets/{name}/versions/{version}"
"""Where a ship downloads one version of a dataset (GET, HEAD; resumable with ``Range``)."""

ETAG_PREFIX = "sha256:"

MAX_DATASET_BYTES = 2 * 1024**3
"""Largest published version (after conversion to Arrow IPC). Reference data (price lists, rosters, menus)
are megabytes; 2 GiB keeps a mistaken publish of a whole warehouse table from filling every ship's disk."""

MAX_DATASETS_OFFERED = 256
"""Datasets in one desired state; bounds the answer a ship parses (each entry is ~120 bytes of JSON)."""

MAX_DESIRED_BYTES = 48 * 1024
"""A desired-state answer is read whole by the edge (which reads at most ``MAX_ERROR_BODY_BYTES`` of any
answer): 256 offers and the managed settings fit well within it."""

MAX_SETTING_VALUE_CHARS = 2048
"""A managed value is one flag's text: a priority list of a hundred tables fits."""

DEFAULT_DATASET_PRIORITY = 3
"""Download class of a dataset nobody gave a ``--priority``: ahead of ordinary tables (class 5), since a
ship runs on stale prices until it arrives, behind alarms and the classes a thin link still carries (0-1)."""

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def _bad(message: str, what: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=ErrorCode.BAD_REQUEST, op=f"reading the {what}", subject="downlink")


# -- managed settings ------------------------------------------------------------------------------------


def _priority_list(text: str) -> str:
    """``NAME=N,NAME=N``: tables and datasets to priority classes (the edge's repeatable ``--priority``)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError("give at least one NAME=N, e.g. telemetry=0,offers=2")
    for item in items:
        name, sep, number = item.partition("=")
        if not sep or not number.strip().isdigit() or not 0 <= int(number) <= MAX_PRIORITY_CLASS:
            raise ValueError(f"{item!r} is not NAME=N with N from 0 to {MAX_PRIORITY_CLASS}")
        try:
            TableName(name.strip())
        except RemoteProtocolError as error:
            raise ValueError(str(error)) from None
    return ",".join(f"{n.strip()}={int(v)}" for n, _, v in (i.partition("=") for i in items))


def _boolean(text: str) -> str:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return "true"
    if lowered in ("false", "no", "off", "0"):
        return "false"
    raise ValueError(f"{text!r} is not true or false")


def _class(text: str) -> str:
    if not text.strip().isdigit() or not 0 <= int(text) <= MAX_PRIORITY_CLASS:
        raise ValueError(f"{text!r} is not a priority class from 0 to {MAX_PRIORITY_CLASS}")
    return str(int(text))


def _checked(parser):
    def check(text: str) -> str:
        parser(text)  # raises ValueError with the unit rules
        return text.strip()
    return check


MANAGED_SETTINGS = {
    "priority": _priority_list,
    "thin-link-below": _checked(parse_rate),
    "thin-link-max-class": _class,
    "metered": _boolean,
    "max-upload-rate": _checked(parse_rate),
    "seal-size": _checked(parse_size),
    "seal-age": _checked(parse_duration),
}
"""The edge's sync settings head office may manage, named as the edge's own flags (``harbour edge run
--seal-size``), each with the check that normalises its text. Anything else (the site, the token, the
data directory, the listen address) is the ship's own business."""


def normalise_setting(key: str, value: str) -> str:
    """The canonical text of one managed value; ``ValueError`` naming the rule when it is not valid."""
    if key not in MANAGED_SETTINGS:
        raise ValueError(f"{key!r} is not a managed setting; choose from {', '.join(MANAGED_SETTINGS)}")
    if not isinstance(value, str) or len(value) > MAX_SETTING_VALUE_CHARS:
        raise ValueError(f"the value of {key} must be text of at most {MAX_SETTING_VALUE_CHARS} characters")
    return MANAGED_SETTINGS[key](value)


# -- the hub's answer: desired state -------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetOffer:
    """The newest version of one dataset offered to a ship, and how to check its bytes."""

    name: str
    version: int
    sha256: str
    size: int

    def __post_init__(self) -> None:
        TableName(self.name)
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise _bad(f"dataset {self.name}: version {self.version!r} is not a positive integer", "desired state")
        if not isinstance(self.sha256, str) or not SHA256_PATTERN.fullmatch(self.sha256):
            raise _bad(f"dataset {self.name}: sha256 is not 64 lowercase hex digits", "desired state")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 0 <= self.size <= MAX_DATASET_BYTES:
            raise _bad(f"dataset {self.name}: size {self.size!r} is not 0..{MAX_DATASET_BYTES}", "desired state")

    @property
    def path(self) -> str:
        return DATASET_VERSION_PATH.format(name=self.name, version=self.version)

    @property
    def etag(self) -> str:
        return f'"{ETAG_PREFIX}{self.sha256}"'


@dataclass(frozen=True)
class ManagedSettings:
    """What head office asked this ship to run with; ``revision`` grows with every change."""

    revision: int
    values: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.revision, int) or isinstance(self.revision, bool) or self.revision < 0:
            raise _bad(f"settings revision {self.revision!r} is not a non-negative integer", "desired state")
        if not isinstance(self.values, dict):
            raise _bad("settings values must be an object of KEY: VALUE", "desired state")
        for key, value in self.values.items():
            try:
                normalise_setting(key, value)
            except ValueError as error:
                raise _bad(f"managed setting {key!r}: {error}", "desired state") from None


@dataclass(frozen=True)
class DesiredState:
    datasets: tuple[DatasetOffer, ...] = ()
    settings: ManagedSettings | None = None

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"datasets": [
            {"name": o.name, "version": o.version, "sha256": o.sha256, "size": o.size} for o in self.datasets]}
        if self.settings is not None:
            doc["settings"] = {"revision": self.settings.revision, "values": dict(self.settings.values)}
        return json.dumps({"downlink": doc}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, body: bytes) -> DesiredState:
        """Parse a report answer; ``RemoteProtocolError`` (bad-request) on anything malformed."""
        if len(body) > MAX_DESIRED_BYTES:
            raise _bad(f"the desired state is {len(body)} bytes, more than {MAX_DESIRED_BYTES}", "desired state")
        doc = _loads(body, "desired state")
        downlink = doc.get("downlink") if isinstance(doc, dict) else None
        if not isinstance(downlink, dict):
            raise _bad('the answer has no "downlink" object', "desired state")
        offers = downlink.get("datasets", [])
        if not isinstance(offers, list) or len(offers) > MAX_DATASETS_OFFERED:
            raise _bad(f'"datasets" must be a list of at most {MAX_DATASETS_OFFERED} offers', "desired state")
        parsed = []
        for offer in offers:
            if not isinstance(offer, dict):
                raise _bad("a dataset offer must be an object", "desired state")
            try:
                parsed.append(DatasetOffer(offer.get("name"), offer.get("version"), offer.get("sha256"),
                                           offer.get("size")))
            except RemoteProtocolError as error:
                raise _bad(str(error), "desired state") from None
        if len({o.name for o in parsed}) != len(parsed):
            raise _bad("a dataset is offered twice", "desired state")
        settings_doc = downlink.get("settings")
        settings = None
        if settings_doc is not None:
            if not isinstance(settings_doc, dict):
                raise _bad('"settings" must be an object', "desired state")
            settings = ManagedSettings(settings_doc.get("revision"), settings_doc.get("values", {}))
        return cls(tuple(parsed), settings)


# -- the ship's report: reported state ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReportedDownlink:
    """What a ship holds and runs with, sent in every report under ``"downlink"``."""

    datasets: dict[str, int] = field(default_factory=dict)
    settings_revision: int = 0
    applied: dict[str, str] = field(default_factory=dict)
    pinned: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"datasets": dict(self.datasets),
                "settings": {"revision": self.settings_revision, "applied": dict(self.applied),
                             "pinned": dict(self.pinned), "refused": dict(self.refused)}}

    @classmethod
    def from_dict(cls, doc: object) -> ReportedDownlink:
        """Check a ship's claim field by field; unknown keys are dropped (a newer edge may send more)."""
        if not isinstance(doc, dict):
            raise _bad('"downlink" must be an object', "backlog report")
        datasets = doc.get("datasets", {})
        if not isinstance(datasets, dict) or len(datasets) > MAX_DATASETS_OFFERED:
            raise _bad(f'"downlink.datasets" must map at most {MAX_DATASETS_OFFERED} names to versions',
                       "backlog report")
        for name, version in datasets.items():
            try:
                TableName(name)
            except RemoteProtocolError as error:
                raise _bad(str(error), "backlog report") from None
            if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 2**53:
                raise _bad(f"downlink.datasets.{name}: {version!r} is not a version number", "backlog report")
        settings = doc.get("settings", {})
        if not isinstance(settings, dict):
            raise _bad('"downlink.settings" must be an object', "backlog report")
        revision = settings.get("revision", 0)
        if not isinstance(revision, int) or isinstance(revision, bool) or not 0 <= revision < 2**53:
            raise _bad("downlink.settings.revision is not a revision number", "backlog report")
        maps = {}
        for key in ("applied", "pinned", "refused"):
            values = settings.get(key, {})
            if not isinstance(values, dict) or not all(
                    k in MANAGED_SETTINGS and isinstance(v, str) and len(v) <= MAX_SETTING_VALUE_CHARS
                    for k, v in values.items()):
                raise _bad(f"downlink.settings.{key} must map managed setting names to text", "backlog report")
            maps[key] = dict(values)
        return cls(dict(datasets), revision, maps["applied"], maps["pinned"], maps["refused"])


def _loads(body: bytes, what: str) -> Any:
    try:
        return json.loads(body, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    except (ValueError, RecursionError, UnicodeDecodeError) as error:
        raise _bad(f"not valid JSON ({type(error).__name__})", what) from None
