"""``harbour edge release``: put parked segments back in the upload queue, through the ledger's one writer.

Theory of operation. The ledger has one writer: the process holding ``DATA/edge.lock`` (``dir_lock``).
Changing it behind a running node's back is what the lock exists to prevent, so release goes one of
three ways:

* no process holds DATA: release takes the lock itself, changes the ledger, lets go;
* a ``harbour edge run`` on this host holds it and answers: release asks that node
  (``POST /v1/parked/release`` with the token from the lock file, which only a reader of DATA has); the
  node changes its own ledger and wakes its sync agent at once;
* anything else (the node still starting, another host, another ``release``): nothing is changed, and
  the message names the holder.

Either way the same ``release_parked`` does the ledger step, so the node and the offline path agree on
what "release" means (all named segments must be parked, or none is released).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from sync_protocol import RemoteProtocolError, SegmentId, decode_error_body

from .dir_lock import RUN_COMMAND, DataDirInUse, DataDirLock, LockHolder, this_host

RELEASE_PATH = "/v1/parked/release"
TOKEN_HEADER = "Harbour-Lock-Token"

RELEASE_TIMEOUT_SECONDS = 30.0
"""The node answers after one ledger transaction per segment (milliseconds); 30 s covers a ship's
slow eMMC in the middle of sealing a 64 MiB segment."""

_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class ReleaseError(Exception):
    """Release did not happen (or not knowingly): one line for the operator, exit status 1."""


class NotParked(ReleaseError):
    def __init__(self, segments: Sequence[str]) -> None:
        self.segments = list(segments)
        verb = "is" if len(self.segments) == 1 else "are"
        super().__init__(f"{', '.join(self.segments)} {verb} not parked; nothing was released")


class ParkedLedger(Protocol):
    def parked(self) -> list[tuple[SegmentId, str]]: ...
    def release(self, segment: SegmentId) -> None: ...


class OwnedLedger(ParkedLedger, Protocol):
    def close(self) -> None: ...


def segment_from_text(text: object) -> SegmentId:
    """``SITE/TABLE/SEQ`` as ``harbour edge status`` prints it (RemoteProtocolError if it is not)."""
    parts = text.split("/") if isinstance(text, str) else []
    if len(parts) != 3:
        raise RemoteProtocolError(f"{str(text)[:100]!r} is not SITE/TABLE/SEQ", op="reading a segment name",
                                  hint="name segments as `harbour edge status` shows them, e.g. ship-1/events/7")
    return SegmentId.of(*parts)


def release_parked(ledger: ParkedLedger, requested: Sequence[SegmentId] | None) -> list[tuple[SegmentId, str]]:
    """Release ``requested`` (None: every parked segment); returns each with the reason it was parked."""
    parked = dict(ledger.parked())
    chosen = list(parked) if requested is None else list(dict.fromkeys(requested))
    missing = [str(segment) for segment in chosen if segment not in parked]
    if missing:
        raise NotParked(missing)
    for segment in chosen:
        ledger.release(segment)
    return [(segment, parked[segment]) for segment in chosen]


def request_body(requested: Sequence[SegmentId] | None) -> dict:
    return {"all": True} if requested is None else {"segments": [str(segment) for segment in requested]}


def parse_request_body(doc: object) -> list[SegmentId] | None:
    """The segments a release request names (None: all); RemoteProtocolError if it names them badly."""
    if isinstance(doc, dict) and doc.get("all") is True and "segments" not in doc:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("segments"), list) and "all" not in doc:
        return [segment_from_text(text) for text in doc["segments"]]
    raise RemoteProtocolError('a release names its segments: {"segments": ["SITE/TABLE/SEQ", ...]} or {"all": true}',
                              op="reading a release request", subject=RELEASE_PATH)


def release(data_dir: Path, requested: Sequence[SegmentId] | None, holder: LockHolder,
            open_ledger: Callable[[Path], OwnedLedger]) -> list[tuple[str, str]]:
    """Release in DATA, offline or through the running node; returns (segment, reason parked) pairs."""
    try:
        lock = DataDirLock.acquire(data_dir, hint="nothing was released; run `harbour edge release` again once "
                                                  "that process answers or has exited")
    except DataDirInUse as in_use:
        return _ask_node(in_use, requested)
    with lock:
        lock.record(holder)
        ledger = open_ledger(data_dir)
        try:
            return [(str(segment), reason) for segment, reason in release_parked(ledger, requested)]
        finally:
            ledger.close()


def node_url(listen: str) -> str:
    """The URL a process on the node's own host reaches ``HOST:PORT`` at (a wildcard means loopback)."""
    host, _, port = listen.rpartition(":")
    host = _ANY_ADDRESS.get(host.strip("[]"), host.strip("[]"))
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _ask_node(in_use: DataDirInUse, requested: Sequence[SegmentId] | None) -> list[tuple[str, str]]:
    holder = in_use.holder
    if (holder is None or holder.command != RUN_COMMAND or not holder.listen or not holder.token
            or holder.host != this_host()):
        raise ReleaseError(str(in_use))
    url = node_url(holder.listen) + RELEASE_PATH
    request = urllib.request.Request(url, data=json.dumps(request_body(requested)).encode(), method="POST",
                                     headers={"Content-Type": "application/json", TOKEN_HEADER: holder.token})
    try:
        with urllib.request.urlopen(request, timeout=RELEASE_TIMEOUT_SECONDS) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        refused = decode_error_body(error.code, error.read())
        raise ReleaseError(f"the running node {holder.describe()} refused: {refused.message}; nothing was "
                           f"released") from None
    except TimeoutError:
        raise ReleaseError(f"the running node {holder.describe()} did not answer within "
                           f"{RELEASE_TIMEOUT_SECONDS:.0f} s; it may still release them: see `harbour edge status`"
                           ) from None
    except (urllib.error.URLError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise ReleaseError(f"{in_use.data_dir} is held by {holder.describe()}, which did not answer at {url} "
                           f"({reason}); nothing was released") from None
    return [(item["segment"], item["reason"]) for item in answer["released"]]
