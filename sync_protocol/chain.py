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

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ErrorCode, RemoteProtocolError
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


def chain_status(links: Mapping[int, ChainLink]) -> ChainStatus:
    """Walk the committed links of one (site, table). Linear in the number of links given; the hub
    passes only links above its last stored watermark, so the walk stays short."""
    if not links:
        return ChainStatus(0, 0, (), ())
    highest = max(links)
    gaps: list[tuple[int, int]] = []
    breaks: list[int] = []
    gap_start = None
    for seq in range(FIRST_SEQ, highest + 1):
        if seq not in links:
            gap_start = seq if gap_start is None else gap_start
            continue
        if gap_start is not None:
            gaps.append((gap_start, seq - 1))
            gap_start = None
        expected = GENESIS_DIGEST if seq == FIRST_SEQ else links[seq - 1].sha256 if seq - 1 in links else None
        if expected is not None and links[seq].prev_sha256 != expected:
            breaks.append(seq)
    watermark = 0
    for seq in range(FIRST_SEQ, highest + 1):
        if seq not in links or seq in breaks:
            break
        watermark = seq
    return ChainStatus(watermark, highest, tuple(gaps), tuple(breaks))


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
