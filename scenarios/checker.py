"""The Jepsen-style checker: what the ships' applications were told, against what the hub holds.

Every write the scenario makes is recorded with its outcome, as the application saw it:

* ``acked``   -- the edge answered 200: the rows are promised (G1, G2). Each must be at the hub exactly once.
* ``refused`` -- the edge answered 4xx/5xx (e.g. 507, quota reached): nothing was stored, so none of these
  rows may appear at the hub.
* ``unknown`` -- no answer (the edge was killed mid-write, or the connection broke): the rows may or may
  not be stored, like any at-least-once queue; either is correct, but never twice.

At the end the checker reads every merged table at the hub (``row_id`` and the lineage column ``_site``)
and counts, per ship and table:

* ``lost``        -- acknowledged by an edge, absent at the hub;
* ``duplicated``  -- extra copies of a row id at the hub (a row present 3 times counts 2);
* ``unexpected``  -- at the hub but never acknowledged or attempted (refused writes, ids never generated,
  or a row filed under another ship's ``_site``);
* ``gaps``        -- seq gaps, hash-chain breaks and quarantined segments the hub reports for that
  ship and table (G8): a hole in the segment sequence is a loss even when no row id says so.

Any non-zero count fails the run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from .workloads import ship_number_of

OUTCOMES = ("acked", "refused", "unknown")
FAILURE_COUNTS = ("lost", "duplicated", "unexpected", "gaps")


@dataclass
class WriteLog:
    """Id ranges of every write, by (ship, table) and outcome. Ranges, not ids: a million rows cost a few
    thousand tuples."""

    ranges: dict[tuple[str, str], dict[str, list[tuple[int, int]]]] = field(
        default_factory=lambda: defaultdict(lambda: {o: [] for o in OUTCOMES}))
    raw_bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # acked Arrow bytes per ship
    # (first row id, wall time of the edge's 200) of every acked write, for the freshness figures
    ack_times: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))

    def record(self, ship: str, table: str, first_id: int, n: int, outcome: str, nbytes: int = 0,
               acked_at: float | None = None) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
        self.ranges[(ship, table)][outcome].append((first_id, n))
        if outcome == "acked":
            self.raw_bytes[ship] += nbytes
            if acked_at is not None:
                self.ack_times[(ship, table)].append((first_id, acked_at))

    def ids(self, ship: str, table: str, outcome: str) -> np.ndarray:
        spans = self.ranges.get((ship, table), {}).get(outcome, [])
        if not spans:
            return np.empty(0, np.int64)
        return np.concatenate([np.arange(first, first + n, dtype=np.int64) for first, n in spans])

    def rows(self, outcome: str) -> int:
        return sum(n for by_outcome in self.ranges.values() for _, n in by_outcome[outcome])


@dataclass
class Counts:
    acked: int = 0
    refused: int = 0
    unknown: int = 0
    at_hub: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    gaps: int = 0
    unknown_stored: int = 0  # of the unknown writes, rows that did arrive (either way is correct)
    examples: dict[str, list[int]] = field(default_factory=dict)  # a few row ids per failure kind

    @property
    def failed(self) -> bool:
        return any(getattr(self, name) for name in FAILURE_COUNTS)


@dataclass
class CheckResult:
    by_ship_table: dict[tuple[str, str], Counts]
    gap_details: list[str]

    @property
    def passed(self) -> bool:
        return not any(c.failed for c in self.by_ship_table.values())

    def totals(self) -> Counts:
        total = Counts()
        for counts in self.by_ship_table.values():
            for name in ("acked", "refused", "unknown", "at_hub", "lost", "duplicated", "unexpected", "gaps",
                         "unknown_stored"):
                setattr(total, name, getattr(total, name) + getattr(counts, name))
        return total

    def to_json(self) -> dict:
        return {"passed": self.passed, "totals": _counts_json(self.totals()), "gap_details": self.gap_details,
                "by_ship_table": [{"ship": ship, "table": table, **_counts_json(c)}
                                  for (ship, table), c in sorted(self.by_ship_table.items())]}


def _counts_json(counts: Counts) -> dict:
    data = asdict(counts)
    if not data["examples"]:
        data.pop("examples")
    return data


EXAMPLES = 5


def check(log: WriteLog, ships: list[str], tables: list[str], hub_rows: dict[str, tuple[np.ndarray, np.ndarray]],
          hub_status: dict | None) -> CheckResult:
    """``hub_rows[table] = (sites, row_ids)`` as read from the hub's merged table (absent: no such table).
    ``hub_status`` is ``harbour hub status --format json`` (its ``sites[].tables[t]`` gaps and chain breaks
    and ``sites[].quarantined``)."""
    result: dict[tuple[str, str], Counts] = {(s, t): Counts() for s in ships for t in tables}
    number_of = {ship: number for number, ship in enumerate(ships)}
    for table in tables:
        sites, row_ids = hub_rows.get(table, (np.empty(0, object), np.empty(0, np.int64)))
        row_ids = np.asarray(row_ids, np.int64)
        sites = np.asarray(sites, object)
        owner = ship_number_of(row_ids)
        for ship in ships:
            counts = result[(ship, table)]
            mine = owner == number_of[ship]
            ids_here, copies = np.unique(row_ids[mine], return_counts=True)
            acked, refused, unknown = (log.ids(ship, table, o) for o in OUTCOMES)
            counts.acked, counts.refused, counts.unknown = len(acked), len(refused), len(unknown)
            counts.at_hub = int(mine.sum())
            lost = acked[~np.isin(acked, ids_here)]
            counts.lost = len(lost)
            counts.duplicated = int((copies - 1).sum())
            counts.unknown_stored = int(np.isin(unknown, ids_here).sum())
            allowed = np.concatenate([acked, unknown])
            never = ids_here[~np.isin(ids_here, allowed)]
            misfiled = row_ids[mine & (sites != ship)]
            counts.unexpected = int(copies[~np.isin(ids_here, allowed)].sum()) + len(misfiled)
            _examples(counts, lost=lost, duplicated=ids_here[copies > 1], unexpected=np.concatenate([never, misfiled]))
        strangers = row_ids[(owner < 0) | (owner >= len(ships))]
        if len(strangers):  # ids no ship of this scenario could have generated
            counts = result.setdefault(("(unknown ship)", table), Counts())
            counts.unexpected += len(strangers)
            counts.at_hub += len(strangers)
            _examples(counts, unexpected=strangers)
    gap_details = _gaps(result, hub_status or {}, set(ships), set(tables))
    return CheckResult(result, gap_details)


def _examples(counts: Counts, **arrays: np.ndarray) -> None:
    for name, ids in arrays.items():
        if len(ids):
            counts.examples[name] = [int(i) for i in ids[:EXAMPLES]]


def _gaps(result: dict[tuple[str, str], Counts], status: dict, ships: set[str], tables: set[str]) -> list[str]:
    details = []
    for site in status.get("sites", []):
        name = site.get("site")
        for table, info in (site.get("tables") or {}).items():
            problems = [("seq gap", g) for g in info.get("gaps") or []] + \
                       [("chain break at seq", b) for b in info.get("chain_breaks") or []]
            for what, where in problems:
                details.append(f"{name}/{table}: {what} {where}")
            if problems:
                result.setdefault((name, table), Counts()).gaps += len(problems)
        for quarantined in site.get("quarantined") or []:
            table = quarantined.get("table", "?")
            details.append(f"{name}/{table}: segment {quarantined.get('seq')} quarantined: "
                           f"{quarantined.get('reason', '')}")
            result.setdefault((name, table), Counts()).gaps += 1
    return details
