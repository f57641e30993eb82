"""The hash chain of a (site, table): how the hub proves it holds every segment up to a watermark (G8).

Each manifest carries ``prev-sha256``, the digest of the segment before it. Segments may arrive out of
order (several in flight, priorities, a parked one), so the hub does not insist on order; it keeps what
it committed and derives from it:

* ``watermark`` -- the highest seq such that every seq from 1 to it is committed *and* each one's
  ``prev-sha256`` is the digest of the one before (a chain with no hole and no splice);
* ``gaps`` -- seq ranges missing below the highest committed seq;
* ``breaks`` -- seqs whose ``prev-sha256`` does not match their predecessor (a diverged history).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .limits import FIRST_SEQ, GENESIS_DIGEST
from .manifest import Manifest


@dataclass(frozen=True)
class ChainLink:
    sha256: str
    prev_sha256: str


@dataclass(frozen=True)
class ChainStatus:
    watermark: int  # 0 when seq 1 is not committed yet
    highest: int
    gaps: tuple[tuple[int, int], ...]  # inclusive (first, last) ranges of missing seqs
    breaks: tuple[int, ...]

    @property
    def complete(self) -> bool:
        return not self.gaps and not self.breaks


def chain_from_runs(runs: Sequence[tuple[int, int]], breaks: Iterable[int]) -> ChainStatus:
    """The status from the *runs* of consecutive committed seqs -- inclusive ``(first, last)`` ranges, ascending,
    each separated from the next by at least one missing seq -- and the seqs whose ``prev-sha256`` does not
    match their committed predecessor (or the genesis digest, for seq 1). Linear in ``len(runs) + len(breaks)``,
    whatever the seqs are: one segment at seq 10^12 is one run and one gap (the hub's ledger finds the runs
    with SQL, ``hub.ledger``)."""
    gaps: list[tuple[int, int]] = []
    end = FIRST_SEQ - 1
    for index, (first, last) in enumerate(runs):
        if not (end + 1 if index == 0 else end + 2) <= first <= last:
            raise LocalProtocolError(f"run {first}-{last} after one ending at {end}: runs must ascend with gaps "
                                     "between them", op="computing chain status")
        if first > end + 1:
            gaps.append((end + 1, first - 1))
        end = last
    broken = tuple(sorted(set(breaks)))
    watermark = 0
    if runs and runs[0][0] == FIRST_SEQ:
        watermark = runs[0][1]
        if broken and broken[0] <= watermark:
            watermark = broken[0] - 1
    return ChainStatus(watermark, end if runs else 0, tuple(gaps), broken)


def chain_status(links: Mapping[int, ChainLink]) -> ChainStatus:
    """The status of the committed links of one (site, table), by seq. Sorts the seqs once: the cost follows
    the number of links, never the seq range."""
    runs: list[tuple[int, int]] = []
    breaks: list[int] = []
    for seq in sorted(links):
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
        expected = GENESIS_DIGEST if seq == FIRST_SEQ else links[seq - 1].sha256 if seq - 1 in links else None
        if expected is not None and links[seq].prev_sha256 != expected:
            breaks.append(seq)
    return chain_from_runs(runs, breaks)


def check_link(manifest: Manifest, predecessor: ChainLink | None, successor: ChainLink | None) -> None:
    """Refuse a segment that would splice the chain: its prev-sha256 must match the committed
    predecessor, and a committed successor must point at its sha256."""
    seq = manifest.segment.seq
    if predecessor is not None and manifest.prev_sha256 != predecessor.sha256:
        raise RemoteProtocolError(
            f"segment {manifest.segment} says seq {seq - 1} had sha256 {manifest.prev_sha256[:16]}..., "
            f"the hub committed {predecessor.sha256[:16]}...", code=ErrorCode.CHAIN_CONFLICT,
            op="committing", subject=str(manifest.segment),
            hint="the ship's segment history diverged from the hub's; an operator must look at this site",
        )
    if successor is not None and successor.prev_sha256 != manifest.sha256:
        raise RemoteProtocolError(
            f"committed seq {seq + 1} says seq {seq} has sha256 {successor.prev_sha256[:16]}..., "
            f"this upload has {manifest.sha256[:16]}...", code=ErrorCode.CHAIN_CONFLICT,
            op="committing", subject=str(manifest.segment),
            hint="the ship's segment history diverged from the hub's; an operator must look at this site",
        )
