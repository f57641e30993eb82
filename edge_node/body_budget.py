"""The bytes of write bodies the edge holds in memory at once, shared by the connections as their bytes arrive.

Every write body is read whole into memory before it is decoded, so the bodies in flight share one budget
(``edge_node.config.MAX_INFLIGHT_BODY_BYTES``) and memory stays bounded however many applications write (G7).
A body's share is the bytes it has *sent*, taken as they arrive, never what it announces: when a body reserved
its announced Content-Length up front, four connections announcing 64 MiB and sending nothing held the whole
256 MiB, and every other write waited until their 408 (issue 16, finding 3). Now a silent announcement holds
nothing, and a body that does send holds only what the node really holds for it.

Taking room as bytes arrive can deadlock where reserving it up front could not: several large bodies each
holding part of the budget, each waiting for more, none able to finish. ``take`` breaks that at once: when every
body holding room is itself waiting for more, the one holding least is refused (``BudgetDeadlock``, answered 503
with Retry-After) and frees its share, so the others finish. It takes five bodies of 52 MiB and more arriving
together to get there with the default limits; on a ship's LAN bodies arrive in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class BudgetDeadlock(Exception):
    """Every body holding room was waiting for more: this one, holding least, gave its share back."""


class BodyShare:
    """One body's share of a ``ByteBudget``: the bytes it holds, and whether it waits for more."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.held = 0
        self.waiting = False
        self.refused = False

    async def take(self, size: int) -> None:
        """Room for ``size`` more bytes of this body; waits while the budget is full."""
        await self._budget._take(self, size)  # noqa: SLF001 -- the share is the budget's handle


class ByteBudget:
    """An async semaphore counted in bytes, taken a body's bytes at a time (see the module's docstring)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._shares: set[BodyShare] = set()
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def share(self) -> AsyncIterator[BodyShare]:
        """A share for one body, held (with all it took) until the body is decoded and written."""
        share = BodyShare(self)
        self._shares.add(share)
        try:
            yield share
        finally:
            self._shares.discard(share)
            async with self._changed:
                self.used -= share.held
                share.held = 0
                self._changed.notify_all()

    async def _take(self, share: BodyShare, size: int) -> None:
        size = min(size, self.capacity - share.held)  # a body never needs more than the whole budget
        async with self._changed:
            share.waiting = True
            try:
                while self.used + size > self.capacity:
                    self._break_deadlock()
                    if share.refused:
                        raise BudgetDeadlock
                    await self._changed.wait()
            finally:
                share.waiting = False
            self.used += size
            share.held += size

    def _break_deadlock(self) -> None:
        holders = [share for share in self._shares if share.held > 0]
        if holders and all(share.waiting for share in holders):
            victim = min(holders, key=lambda share: share.held)
            victim.refused = True
            self.used -= victim.held
            victim.held = 0
            self._changed.notify_all()
