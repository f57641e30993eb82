"""The life of one reference dataset on a ship, as one transition table (issue 17, the downlink).

Theory of operation. The hub answers every report of the ship with the newest version of each dataset
offered to it (``sync_protocol.downlink.DesiredState``). For each dataset the ship keeps two things: the
version it *holds* (verified, switched to, what readers get) and at most one version it is *fetching*.
Only the fetch moves through states::

    absent -> offered -> downloading(offset) -> verifying -> current
                 ^  ^          |   ^                |
                 |  +----------+---+ newer offer    | sha256 mismatch: offered again, from byte 0
                 |             v
                 +-------- waiting (404/410: the version is not served any more; the next answer says which is)

* ``absent``: nothing held, nothing offered.
* ``offered``: a version newer than the held one is offered; nothing of it is on board yet.
* ``downloading``: ``offset`` bytes of it are durable on board (fsynced); a cut or a restart resumes there
  with ``Range: bytes=offset-``, so a cut costs at most what was in flight since the last fsync.
* ``verifying``: every byte is on board; its sha256 is checked against the offer before anything switches.
* ``current``: the held version is the newest offered; readers see it. A switch is atomic: readers see the
  old version or the new one, never a mix (the store's job, ``edge_node.datasets``).
* a ``416`` (the hub cannot resume at that offset) drops the partial: offered again, fetched from byte 0.
* ``waiting``: the hub answered 404 or 410 for the version being fetched (pruned, or no longer offered to this
  ship): the partial is dropped and the ship waits for the next report answer.

Only the newest offer counts: an offer newer than the one being fetched *supersedes* it (its partial is
discarded), so a ship that was offline while versions 2 and 3 were published fetches only 3. An offer that is
not newer than what is held or fetched changes nothing (a report answer repeats the desired state every time).

Pure: no I/O, no clock. ``DatasetFetch`` says what to do (``Action``); the store and the downloader do it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .downlink import DatasetOffer
from .errors import LocalProtocolError


class DatasetState(enum.Enum):
    ABSENT = "absent"
    OFFERED = "offered"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    CURRENT = "current"
    WAITING = "waiting"


class DatasetEvent(enum.Enum):
    OFFER = "newer offer"
    START = "fetch (Range from offset)"
    RECEIVED = "bytes fsynced"
    ALL_RECEIVED = "all bytes on board"
    VERIFIED = "sha256 matches, switched"
    CORRUPT = "sha256 mismatch"
    GONE = "404/410"
    HELD_OFFERED = "held version offered"
    RANGE_REFUSED = "416: from byte 0"


DATASET_TRANSITIONS: dict[DatasetState, dict[DatasetEvent, DatasetState]] = {
    DatasetState.ABSENT: {DatasetEvent.OFFER: DatasetState.OFFERED},
    DatasetState.OFFERED: {
        DatasetEvent.OFFER: DatasetState.OFFERED,  # a newer one replaces it before a byte came
        DatasetEvent.START: DatasetState.DOWNLOADING,
        DatasetEvent.ALL_RECEIVED: DatasetState.VERIFYING,  # an empty version: nothing to fetch
        DatasetEvent.GONE: DatasetState.WAITING,
    },
    DatasetState.DOWNLOADING: {
        DatasetEvent.START: DatasetState.DOWNLOADING,  # resumed after a cut or a restart
        DatasetEvent.RECEIVED: DatasetState.DOWNLOADING,
        DatasetEvent.ALL_RECEIVED: DatasetState.VERIFYING,
        DatasetEvent.OFFER: DatasetState.OFFERED,  # superseded: the partial is discarded
        DatasetEvent.GONE: DatasetState.WAITING,
        DatasetEvent.RANGE_REFUSED: DatasetState.OFFERED,  # the hub cannot resume there: the partial is discarded
    },
    DatasetState.VERIFYING: {
        DatasetEvent.VERIFIED: DatasetState.CURRENT,
        DatasetEvent.CORRUPT: DatasetState.OFFERED,  # fetched again from byte 0
        DatasetEvent.OFFER: DatasetState.OFFERED,
    },
    DatasetState.CURRENT: {DatasetEvent.OFFER: DatasetState.OFFERED},
    DatasetState.WAITING: {
        DatasetEvent.OFFER: DatasetState.OFFERED,
        DatasetEvent.HELD_OFFERED: DatasetState.CURRENT,  # the hub withdrew the newer one: the held one is newest
    },
}
DATASET_START = DatasetState.ABSENT


def next_dataset_state(state: DatasetState, event: DatasetEvent) -> DatasetState:
    """The state after ``event``; ``LocalProtocolError`` for a move the table does not allow."""
    target = DATASET_TRANSITIONS[state].get(event)
    if target is None:
        raise LocalProtocolError(
            f"dataset event {event.value!r} is not allowed in state {state.value!r}",
            op="changing dataset state", hint="see DATASET_TRANSITIONS in sync_protocol.dataset_states")
    return target


class Action(enum.Enum):
    NOTHING = "nothing"
    FETCH = "fetch"  # start or resume the target version at ``offset``
    DISCARD_PARTIAL = "discard partial"  # drop what is on board of the old target, then fetch the new one


@dataclass
class DatasetFetch:
    """One dataset's fetch: the held version, the target being fetched, and how far it is durable."""

    name: str
    held: DatasetOffer | None = None
    target: DatasetOffer | None = None
    offset: int = 0
    state: DatasetState = DATASET_START

    @classmethod
    def restored(cls, name: str, held: DatasetOffer | None, partial: DatasetOffer | None,
                 offset: int) -> DatasetFetch:
        """What the store found on board after a start (or a SIGKILL): resume a partial at its durable offset."""
        if partial is not None and (held is None or partial.version > held.version):
            state = DatasetState.VERIFYING if offset == partial.size else DatasetState.DOWNLOADING
            return cls(name, held, partial, offset, state)
        return cls(name, held, None, 0, DatasetState.CURRENT if held else DatasetState.ABSENT)

    def _move(self, event: DatasetEvent) -> None:
        self.state = next_dataset_state(self.state, event)

    def offer(self, offer: DatasetOffer) -> Action:
        """The hub's desired state names ``offer``: fetch it if it is newer than what is held and fetched."""
        newest = max((o.version for o in (self.held, self.target) if o is not None), default=0)
        if offer.version <= newest:
            if self.state is DatasetState.WAITING and self.held is not None and offer.version == self.held.version:
                self._move(DatasetEvent.HELD_OFFERED)
            return Action.NOTHING
        had_partial = self.state in (DatasetState.DOWNLOADING, DatasetState.VERIFYING)
        self._move(DatasetEvent.OFFER)
        self.target, self.offset = offer, 0
        return Action.DISCARD_PARTIAL if had_partial else Action.FETCH

    def start(self) -> int:
        """A request for the target goes out; returns the offset it asks from."""
        if self.target is not None and self.target.size == 0 and self.state is DatasetState.OFFERED:
            self._move(DatasetEvent.ALL_RECEIVED)
            return 0
        self._move(DatasetEvent.START)
        return self.offset

    def received(self, durable_offset: int) -> None:
        """Bytes up to ``durable_offset`` are fsynced; at the target's size they are all on board."""
        assert self.target is not None
        if not self.offset <= durable_offset <= self.target.size:
            raise LocalProtocolError(
                f"dataset {self.name}: durable offset {durable_offset} outside {self.offset}..{self.target.size}",
                op="recording download progress", hint="the store reported progress backwards or past the end")
        self.offset = durable_offset
        self._move(DatasetEvent.ALL_RECEIVED if durable_offset == self.target.size else DatasetEvent.RECEIVED)

    def verified(self, sha256: str) -> bool:
        """The sha256 of the bytes on board; True when they are the offered version (then switch to it)."""
        assert self.target is not None
        if sha256 != self.target.sha256:
            self._move(DatasetEvent.CORRUPT)
            self.offset = 0
            return False
        self._move(DatasetEvent.VERIFIED)
        self.held, self.target, self.offset = self.target, None, 0
        return True

    def range_refused(self) -> None:
        """416 for ``Range: bytes=offset-``: the bytes on board cannot be resumed; fetch from byte 0."""
        self._move(DatasetEvent.RANGE_REFUSED)
        self.offset = 0

    def gone(self) -> None:
        """404/410 for the target: drop it and wait for the next answer."""
        self._move(DatasetEvent.GONE)
        self.target, self.offset = None, 0

    @property
    def wants_bytes(self) -> bool:
        return self.state in (DatasetState.OFFERED, DatasetState.DOWNLOADING)
