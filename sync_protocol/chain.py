"""The hash chain of a (site, table): how the hub proves it holds every segment up to a watermark (G8).

Each manifest carries ``prev-sha256``, the digest of the segment before it. Segments may arrive out of
order (several in flight, priorities, a parked one), so the hub does not insist on order; it keeps what
it committed and derives from it:

* ``watermark`` -- the highest seq such that every seq from 1 to it is committed *and* each one's
  ``prev-sha256`` is the digest of the one before (a chain with no hole and no splice);
* ``gaps`` -- seq ranges missing below the highest committed seq;
* ``breaks`` -- seqs whose ``prev-sha256`` does not match their predecessor (a diverged history).

The hub does not derive these from every link on every call: it keeps the gaps and breaks of each (site, table)
and updates them as each segment commits (``gaps_after_commit``, ``breaks_at_commit``: what one commit changes,
known from the gap that holds its seq and its two neighbours), so that status costs time in the number of gaps
and breaks, never in the number of segments (``chain_from_gaps``).
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
    whatever the seqs are: one segment at seq 10^12 is one run and one gap."""
    gaps: list[tuple[int, int]] = []
    end = FIRST_SEQ - 1
    for index, (first, last) in enumerate(runs):
        if not (end + 1 if index == 0 else end + 2) <= first <= last:
            raise LocalProtocolError(f"run {first}-{last} after one ending at {end}: runs must ascend with gaps "
                                     "between them", op="computing chain status")
        if first > end + 1:
            gaps.append((end + 1, first - 1))
        end = last
    return chain_from_gaps(end, gaps, breaks)


def chain_from_gaps(highest: int, gaps: Sequence[tuple[int, int]], breaks: Iterable[int]) -> ChainStatus:
    """The status from the highest committed seq (0 for none), the inclusive ``(first, last)`` ranges of missing
    seqs below it -- ascending, each separated from the next by at least one committed seq -- and the breaks, as
    the hub keeps them (``gaps_after_commit``). Linear in ``len(gaps) + len(breaks)``. The watermark is not kept:
    it follows from the first gap and the first break, so it cannot disagree with them."""
    end = FIRST_SEQ - 2  # the last missing seq so far: the first gap may start at FIRST_SEQ
    for first, last in gaps:
        if not end + 2 <= first <= last < highest:
            raise LocalProtocolError(f"gap {first}-{last} after one ending at {end}, highest seq {highest}: gaps must "
                                     "ascend with committed seqs between them and after them",
                                     op="computing chain status")
        end = last
    broken = tuple(sorted(set(breaks)))
    watermark = 0
    if highest and not (gaps and gaps[0][0] == FIRST_SEQ):
        watermark = gaps[0][0] - 1 if gaps else highest
        if broken and broken[0] <= watermark:
            watermark = broken[0] - 1
    return ChainStatus(watermark, highest, tuple(gaps), broken)


@dataclass(frozen=True)
class GapChange:
    """What one commit does to the gaps of its (site, table): ``removed`` (the gap its seq was in, if any) gives
    way to ``added`` (what is left of that gap, or the new gap below a seq above the old highest)."""

    removed: tuple[int, int] | None
    added: tuple[tuple[int, int], ...]
    highest: int


def gaps_after_commit(seq: int, highest: int, below: tuple[int, int] | None) -> GapChange:
    """How committing ``seq`` changes the gaps: ``highest`` is the highest committed seq before it (0 for none),
    ``below`` the gap starting nearest at or below ``seq`` (one ordered lookup in a table keyed by gap start) or
    None. A seq above ``highest`` opens the gap between them; one below it fills part of the gap it lies in."""
    if seq < FIRST_SEQ:
        raise LocalProtocolError(f"seq {seq} is below the first seq {FIRST_SEQ}", op="updating chain gaps")
    if seq > highest:
        return GapChange(None, ((highest + 1, seq - 1),) if seq > highest + 1 else (), seq)
    if below is None or not below[0] <= seq <= below[1]:
        raise LocalProtocolError(f"seq {seq} is at or below the highest committed seq {highest} but in no gap "
                                 f"(nearest below: {below}): it is committed already", op="updating chain gaps",
                                 hint="commit a seq once; a repeat is answered from the ledger, not committed again")
    first, last = below
    left = ((first, seq - 1),) if first < seq else ()
    return GapChange(below, left + (((seq + 1, last),) if seq < last else ()), highest)


def breaks_at_commit(manifest: Manifest, predecessor: ChainLink | None, successor: ChainLink | None) -> tuple[int, ...]:
    """The seqs that committing ``manifest`` makes chain breaks: its own, if its ``prev-sha256`` is not the
    committed predecessor's digest, and its successor's, if that one's ``prev-sha256`` is not this digest (seq 1
    needs no check: a ``Manifest`` at seq 1 always starts from the genesis digest). A break depends only on a seq
    and its predecessor, both committed for good, so it is never mended and no other seq's changes. ``check_link``
    refuses both cases today, so the hub finds breaks only in what older hubs committed; this keeps its summary
    true should that ever change."""
    seq = manifest.segment.seq
    found = [seq] if predecessor is not None and manifest.prev_sha256 != predecessor.sha256 else []
    if successor is not None and successor.prev_sha256 != manifest.sha256:
        found.append(seq + 1)
    return tuple(found)


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
