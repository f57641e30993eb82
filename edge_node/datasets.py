"""Reference datasets on board (issue 17): a durable store under ``DATA/datasets/``, safe at every SIGKILL.

One directory per dataset (its name is a table name, so a safe path)::

    datasets/offers/current.json      the pointer: which version readers get (version, sha256, size, rows, ...)
    datasets/offers/v3.arrows         verified versions (Arrow IPC stream, byte-identical to what was published)
    datasets/offers/partial.arrows    the version being fetched, ...
    datasets/offers/partial.json      ...and how many of its bytes are durable (the only length trusted)

Theory of operation.

* **Download.** Bytes are appended to ``partial.arrows``; every ``FSYNC_EVERY_BYTES`` (and when a request
  ends, cut or not) the file is fsynced *first*, then ``partial.json`` is replaced with the new offset. After a
  restart, SIGKILL or power cut the partial is truncated to the recorded offset: a torn or unsynced tail is
  simply fetched again, and a cut costs at most ``FSYNC_EVERY_BYTES`` plus what was in flight.
* **Switch.** The complete partial's sha256 is checked against the offer; the file is fsynced, renamed to
  ``v<version>.arrows`` (directory fsynced), then ``current.json`` is replaced atomically (write a temporary
  file, fsync, rename, fsync the directory). A reader reads the pointer and opens the file it names: it gets
  the old version or the new one, never a mix, and a version file never changes once named.
* **Old versions** are kept until the *next* switch (the previous version stays, so a reader that read the
  pointer just before a switch still finds its file; an open file survives deletion on POSIX anyway); anything
  older is deleted at a switch and at start-up.
* **Crash in a switch.** A ``partial.json`` whose version already sits in ``v<version>.arrows`` (renamed, and
  verified before the rename) but is not yet named by the pointer is switched to at start-up.

Synchronous and thread-safe per dataset by design of its callers: the downloader calls it from one task
(fsync and hashing in a worker thread); readers only read the pointer and open files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.ipc as pa_ipc

from sync_protocol import RemoteProtocolError, TableName
from sync_protocol.dataset_states import DatasetFetch
from sync_protocol.downlink import DatasetOffer

from .wal import fsync_dir

log = logging.getLogger(__name__)

DATASETS_DIR = "datasets"
POINTER = "current.json"
PARTIAL = "partial.arrows"
PARTIAL_RECORD = "partial.json"
TMP_SUFFIX = ".tmp"

FSYNC_EVERY_BYTES = 256 * 1024
"""A download fsyncs and records its offset this often: a restart re-fetches at most this much (a few
seconds at 512 kbit/s, ~0.5% of a 50 MB dataset after 20 cuts), and an fsync every 256 KiB costs little
next to the link's own pace. Below 64 KiB the fsyncs would cost more than the bytes they save."""

HASH_BLOCK_BYTES = 1024 * 1024
"""Read size when hashing a complete download (hashlib releases the GIL for big blocks)."""

OPEN_ATTEMPTS = 3
"""A reader that lost the race with two switches in a row (its version file pruned between reading the pointer
and opening the file) reads the pointer again; two switches within one open are already very unlikely."""


@dataclass(frozen=True)
class HeldDataset:
    """The version readers get, as recorded in the pointer."""

    name: str
    version: int
    sha256: str
    size: int
    rows: int | None
    switched_at: float

    @property
    def file_name(self) -> str:
        return version_file(self.version)

    @property
    def offer(self) -> DatasetOffer:
        return DatasetOffer(self.name, self.version, self.sha256, self.size)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def version_file(version: int) -> str:
    return f"v{version}.arrows"


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a reader (or a restart) sees the old content or the new, never a mix."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def count_rows(path: Path) -> int | None:
    """Rows of an Arrow IPC stream file; None if it is not one (it is still served byte for byte)."""
    try:
        with pa.OSFile(str(path)) as source:
            return sum(batch.num_rows for batch in pa_ipc.open_stream(source))
    except (pa.ArrowException, OSError):
        return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


class PartialDownload:
    """The file a version is fetched into; ``durable`` is the offset recorded after the last fsync."""

    def __init__(self, directory: Path, offer: DatasetOffer, durable: int) -> None:
        self.directory = directory
        self.offer = offer
        self.durable = durable
        self.written = durable
        self._handle: BinaryIO | None = None

    def open(self, at: int) -> None:
        """Write from ``at`` on (0 when the hub sent the whole file, else the durable offset)."""
        if at > self.durable:
            raise ValueError(f"cannot resume {self.offer.name} v{self.offer.version} at {at}: only "
                             f"{self.durable} bytes are durable")
        self.close()
        self._handle = (self.directory / PARTIAL).open("r+b" if (self.directory / PARTIAL).exists() else "w+b")
        self._handle.truncate(at)
        self._handle.seek(at)
        self.written = at
        if at < self.durable:
            self.durable = at
            self.record()

    def write(self, data: bytes) -> bool:
        """Append; True when ``FSYNC_EVERY_BYTES`` are unsynced and ``checkpoint`` is due."""
        assert self._handle is not None, "open() first"
        if self.written + len(data) > self.offer.size:
            raise ValueError(f"the hub sent more than the {self.offer.size} bytes of {self.offer.name} "
                             f"v{self.offer.version}")
        self._handle.write(data)
        self.written += len(data)
        return self.written - self.durable >= FSYNC_EVERY_BYTES

    def checkpoint(self) -> int:
        """fsync the bytes, then record their length: only then do they count after a crash."""
        if self._handle is None or self.written == self.durable:
            return self.durable
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.durable = self.written
        self.record()
        return self.durable

    def record(self) -> None:
        record = {**asdict(self.offer), "offset": self.durable}
        write_atomically(self.directory / PARTIAL_RECORD, json.dumps(record).encode())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class DatasetStore:
    def __init__(self, data_dir: Path, clock: Callable[[], float]) -> None:
        self.root = data_dir / DATASETS_DIR
        self.clock = clock

    def _dir(self, name: str) -> Path:
        return self.root / str(TableName(name))

    # -- start-up ---------------------------------------------------------------------------------------

    def recover(self) -> dict[str, DatasetFetch]:
        """Repair what a crash left and say where each dataset stands (a partial resumes at its durable offset)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fetches = {}
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            try:
                name = str(TableName(directory.name))
            except RemoteProtocolError:  # not a dataset's directory: leave it alone
                continue
            for stray in directory.glob("*" + TMP_SUFFIX):
                stray.unlink(missing_ok=True)
            partial, offset = self._recover_partial(directory)
            held = self.held(name)
            if partial is not None and held is not None and partial.version <= held.version:
                self.discard_partial(name)
                partial = None
            self._prune(directory, held)
            fetches[name] = DatasetFetch.restored(name, held.offer if held else None, partial, offset)
        return fetches

    def _recover_partial(self, directory: Path) -> tuple[DatasetOffer | None, int]:
        record = _read_json(directory / PARTIAL_RECORD)
        data = directory / PARTIAL
        try:
            offer = DatasetOffer(record["name"], record["version"], record["sha256"], record["size"]) if record \
                else None
            offset = int(record["offset"]) if record else 0
        except (KeyError, TypeError, ValueError, RemoteProtocolError):  # unreadable: start that version again
            offer, offset = None, 0
        if offer is None:
            data.unlink(missing_ok=True)
            (directory / PARTIAL_RECORD).unlink(missing_ok=True)
            return None, 0
        if not data.exists() and (directory / version_file(offer.version)).exists():
            self._point_at(directory, offer)  # killed between the rename and the pointer: finish the switch
            (directory / PARTIAL_RECORD).unlink(missing_ok=True)
            return None, 0
        if not data.exists():
            offset = 0
        else:
            offset = min(offset, data.stat().st_size)
            with data.open("r+b") as handle:
                handle.truncate(offset)  # anything past the recorded offset was never known durable
        return offer, offset

    # -- downloads ------------------------------------------------------------------------------------------

    def partial(self, offer: DatasetOffer, durable: int) -> PartialDownload:
        directory = self._dir(offer.name)
        directory.mkdir(parents=True, exist_ok=True)
        download = PartialDownload(directory, offer, durable)
        if durable == 0:
            download.record()  # the version being fetched is known before its first byte
        return download

    def discard_partial(self, name: str) -> None:
        directory = self._dir(name)
        (directory / PARTIAL_RECORD).unlink(missing_ok=True)
        (directory / PARTIAL).unlink(missing_ok=True)

    def partial_sha256(self, name: str) -> str:
        return file_sha256(self._dir(name) / PARTIAL)

    def switch(self, offer: DatasetOffer) -> HeldDataset:
        """Make the complete, verified partial the current version (call only after its sha256 matched)."""
        directory = self._dir(offer.name)
        data = directory / PARTIAL
        if not data.exists() and offer.size == 0:
            directory.mkdir(parents=True, exist_ok=True)
            data.touch()
        with data.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(data, directory / version_file(offer.version))
        fsync_dir(directory)
        held = self._point_at(directory, offer)
        (directory / PARTIAL_RECORD).unlink(missing_ok=True)
        self._prune(directory, held)
        return held

    def _point_at(self, directory: Path, offer: DatasetOffer) -> HeldDataset:
        held = HeldDataset(offer.name, offer.version, offer.sha256, offer.size,
                           count_rows(directory / version_file(offer.version)), self.clock())
        write_atomically(directory / POINTER, json.dumps(held.to_dict()).encode())
        return held

    def _prune(self, directory: Path, held: HeldDataset | None) -> None:
        """Delete versions older than the one before ``held`` (that one stays for readers mid-switch)."""
        versions = sorted(int(p.stem[1:]) for p in directory.glob("v*.arrows") if p.stem[1:].isdigit())
        current = held.version if held else None
        older = [v for v in versions if current is None or v < current]
        keep = {current, *older[-1:]}
        for version in versions:
            if version not in keep:
                (directory / version_file(version)).unlink(missing_ok=True)

    # -- readers ------------------------------------------------------------------------------------------

    def held(self, name: str) -> HeldDataset | None:
        doc = _read_json(self._dir(name) / POINTER)
        if doc is None:
            return None
        try:
            return HeldDataset(**doc)
        except TypeError:
            return None

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / POINTER).exists())

    def all_held(self) -> list[HeldDataset]:
        return [held for name in self.names() if (held := self.held(name)) is not None]

    def path_of(self, held: HeldDataset) -> Path:
        return self._dir(held.name) / held.file_name

    def open_current(self, name: str) -> tuple[HeldDataset, BinaryIO] | None:
        """The current version and its file, opened (None if the dataset is unknown). The open file is that
        version's bytes whatever switches happen while it is read."""
        for _ in range(OPEN_ATTEMPTS):
            held = self.held(name)
            if held is None:
                return None
            with contextlib.suppress(FileNotFoundError):
                return held, self.path_of(held).open("rb")
        return None

    def bytes_on_disk(self) -> int:
        """Every dataset file (versions and partials), for the disk quota."""
        if not self.root.is_dir():
            return 0
        total = 0
        for path in self.root.glob("*/*.arrows"):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total
