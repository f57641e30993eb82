"""G1 durable ack under SIGKILL: writers hammer a real edge process over HTTP while it is killed at
random moments; after every restart each acknowledged write is present exactly once, whole.

Every write carries a unique ``write_id`` and its own row count, so a torn write (some rows of it) and
a duplicated one (twice its rows) are both visible in the counts. Writes that got no answer may be
stored or not -- but if stored, then whole. Seal size and age are tiny so that kills also land in the
middle of sealing and of ledger commits. The seed is printed; HARBOUR_TEST_SEED replays a run.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
import urllib.error
from pathlib import Path

import pyarrow as pa
import pytest

from edge_node.codecs import ARROW_STREAM, CSV, JSON_LINES
from edge_node.query import run_query

FAST_SEALING = ("--seal-size", "32KiB", "--seal-age", "0.2s", "--housekeeping-interval", "0.05s")
WRITERS = 4


def _body(write_id: int, rows: int, content_type: str) -> bytes:
    records = [{"write_id": write_id, "row_in_write": i, "rows_in_write": rows, "value": i * 0.5,
                "note": f"w{write_id}-r{i}"} for i in range(rows)]
    if content_type == JSON_LINES:
        return "".join(json.dumps(r) + "\n" for r in records).encode()
    if content_type == CSV:
        lines = ["write_id,row_in_write,rows_in_write,value,note"]
        lines += [f"{r['write_id']},{r['row_in_write']},{r['rows_in_write']},{r['value']},{r['note']}" for r in records]
        return ("\n".join(lines) + "\n").encode()
    from edge_node.codecs import encode_arrow_stream

    return encode_arrow_stream(pa.Table.from_pylist(records))


class Hammer:
    """Writer threads that post numbered writes until stopped; remembers which ones were acked."""

    def __init__(self, rng: random.Random, http) -> None:
        self.rng = rng
        self.http = http
        self.ids = itertools.count(1)
        self.acked: dict[int, int] = {}  # write_id -> rows
        self.refused: list[tuple[int, dict]] = []
        self.lock = threading.Lock()

    def run(self, url: str, seconds: float) -> None:
        stop = threading.Event()
        seeds = [self.rng.randrange(2**32) for _ in range(WRITERS)]
        threads = [threading.Thread(target=self._writer, args=(url, stop, random.Random(s))) for s in seeds]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        return stop, threads

    def _writer(self, url: str, stop: threading.Event, rng: random.Random) -> None:
        while not stop.is_set():
            with self.lock:
                write_id = next(self.ids)
            rows = rng.choice([1, 1, 3, 20, 200])
            content_type = rng.choice([ARROW_STREAM, ARROW_STREAM, JSON_LINES, CSV])
            try:
                status, answer = self.http.post(url, "telemetry", _body(write_id, rows, content_type), content_type,
                                                timeout=10)
            except (urllib.error.URLError, ConnectionError, OSError):
                continue  # no answer: may or may not be stored
            with self.lock:
                if status == 200:
                    assert answer == {"table": "telemetry", "rows": rows}
                    self.acked[write_id] = rows
                else:
                    self.refused.append((status, answer))


def check_exactly_once(data_dir: Path, acked: dict[int, int]) -> int:
    if not (data_dir / "wal" / "telemetry").exists():
        assert not acked, f"all {len(acked)} acknowledged writes lost: the table's log directory is gone"
        return 0  # nothing written yet: the table does not exist
    result = run_query(data_dir, "SELECT write_id, COUNT(*) AS n, MIN(rows_in_write) AS k, "
                                 "COUNT(DISTINCT row_in_write) AS distinct_rows FROM telemetry GROUP BY write_id")
    stored = {row["write_id"]: row for row in result.to_pylist()}
    missing = sorted(set(acked) - set(stored))
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:10]}"
    for write_id, row in stored.items():
        assert row["n"] == row["k"] == row["distinct_rows"], f"write {write_id} is torn or duplicated: {row}"
        if write_id in acked:
            assert row["n"] == acked[write_id]
    return len(stored)


def crash_loop(tmp_path: Path, start_edge, http, kills: int, powercut=None, check_every: int = 1) -> dict[str, int]:
    """``kills`` cycles of: start the edge, check every acked write (every ``check_every`` cycles, and at the
    end: a loss or a duplicate stays visible), hammer it, SIGKILL it. With ``powercut`` (the power-cut
    filesystem) the data directory lives on it and every kill is a power loss: whatever the edge had not
    fsync'd is dropped, torn or zero-filled before the restart. Returns the cuts' totals."""
    seed = int(os.environ.get("HARBOUR_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"crash test seed {seed} (replay with HARBOUR_TEST_SEED={seed})")
    rng = random.Random(seed)
    data_dir = (powercut.path if powercut else tmp_path) / "edge"  # made by the edge itself, durably or not
    hammer = Hammer(rng, http)
    totals: dict[str, int] = {}
    for cycle in range(kills):
        edge = start_edge(data_dir, *FAST_SEALING)
        if cycle % check_every == 0:
            check_exactly_once(data_dir, hammer.acked)
        stop, threads = hammer.run(edge.url, rng.uniform(0.05, 0.6))
        edge.kill()  # SIGKILL while the writers are still writing
        if powercut:
            for key, value in powercut.cut(powercut.inside(data_dir), rng.randrange(2**32), [edge.proc.pid]).items():
                totals[key] = totals.get(key, 0) + value
        stop.set()
        for thread in threads:
            thread.join(30)
        assert not hammer.refused, f"cycle {cycle}: writes were refused: {hammer.refused[:3]}"
    edge = start_edge(data_dir, *FAST_SEALING)
    stored = check_exactly_once(data_dir, hammer.acked)
    edge.stop()
    assert len(hammer.acked) > kills, "the writers hardly got any write through; the test proved nothing"
    assert stored >= len(hammer.acked)
    log = edge.stderr_path.read_text()
    assert "Traceback" not in log
    # A power cut is not a disk fault: what it leaves is a torn tail, truncated, never "corruption".
    assert "corrupt" not in log and not (data_dir / "quarantine").exists(), log[-3000:]
    segments = list((data_dir / "segments" / "telemetry").glob("*.parquet"))
    assert len(segments) > 1, "sealing never ran during the test"
    return totals


@pytest.mark.guarantee("G1")
@pytest.mark.integration
def test_acked_writes_survive_dozens_of_sigkills(tmp_path, start_edge, http):
    crash_loop(tmp_path, start_edge, http, kills=int(os.environ.get("HARBOUR_CRASH_KILLS", "25")))


@pytest.mark.guarantee("G1")
@pytest.mark.soak
@pytest.mark.timeout(1800)  # ~1.2 s per kill cycle; the default 300 s stops it at about 250 kills
def test_acked_writes_survive_hundreds_of_sigkills(tmp_path, start_edge, http):
    crash_loop(tmp_path, start_edge, http, kills=300)


POWER_CUTS = int(os.environ.get("HARBOUR_POWER_CUTS", "8"))
"""Power cuts of the default run (about a second each); the soak run's count is in the soak test."""

SOAK_POWER_CUTS = 150
"""The edge's share of the soak run's >= 200 power cuts (the hub's is in tests/hub/test_power_loss.py):
about 1.3 s each on a shared 2-core machine."""


@pytest.mark.guarantee("G1")
@pytest.mark.integration
def test_acked_writes_survive_power_cuts(tmp_path, powercut, start_edge, http):
    totals = crash_loop(tmp_path, start_edge, http, kills=POWER_CUTS, powercut=powercut)
    print(f"power cuts: {totals}")
    assert totals["dropped_writes"] > 0, "no cut lost an unsynced write: the harness proved nothing"


@pytest.mark.guarantee("G1")
@pytest.mark.soak
@pytest.mark.timeout(600)
def test_acked_writes_survive_a_soak_of_power_cuts(tmp_path, powercut, start_edge, http):
    started = time.monotonic()
    totals = crash_loop(tmp_path, start_edge, http, kills=SOAK_POWER_CUTS, powercut=powercut, check_every=15)
    print(f"{SOAK_POWER_CUTS} power cuts in {time.monotonic() - started:.0f} s: {totals}")
    assert totals["torn"] and totals["zeros"] and totals["names_undone"], totals


@pytest.mark.guarantee("G1")
@pytest.mark.integration
def test_a_sealed_segment_survives_a_power_cut(powercut, start_edge, http):
    """The first seal of a table makes ``segments/<table>/``: its entry must be durable before the log is
    deleted, or a power cut takes the only copy of the rows with it."""
    data_dir = powercut.path / "edge"
    edge = start_edge(data_dir, *FAST_SEALING)
    acked = {}
    for write_id in range(1, 6):
        status, _ = http.post(edge.url, "telemetry", _body(write_id, 20, JSON_LINES), JSON_LINES)
        assert status == 200
        acked[write_id] = 20
    deadline = time.monotonic() + 20
    while not list((data_dir / "segments" / "telemetry").glob("*.parquet")) or wal_logs(data_dir):
        assert time.monotonic() < deadline, "the edge did not seal within 20 s"
        time.sleep(0.05)
    edge.kill()
    powercut.cut(powercut.inside(data_dir), 1, [edge.proc.pid])
    start_edge(data_dir, *FAST_SEALING)
    assert check_exactly_once(data_dir, acked) == len(acked)


def wal_logs(data_dir: Path) -> list[Path]:
    return list((data_dir / "wal").glob("*/*.log"))


DISK_FAULTS = [("write", "ENOSPC", -1), ("write", "EIO", 3), ("fsync", "EIO", 2), ("rename", "EIO", 2)]
"""(operation, errno, how many times): a full disk stays full until space is freed; an I/O error comes and goes."""


@pytest.mark.guarantee("G1")
@pytest.mark.integration
@pytest.mark.parametrize("op, error, times", DISK_FAULTS, ids=[f"{op}-{error}" for op, error, _ in DISK_FAULTS])
def test_a_disk_fault_is_never_acked_and_loses_nothing(powercut, start_edge, http, op, error, times):
    """The Nth write / fsync / rename anywhere in DATA (log, ledger, segments) fails: writers whose rows were not
    stored get a 5xx saying so (507 for a full disk), never a 200; once the fault clears writes are acked again,
    and after a power cut every acked write is there."""
    seed = int(os.environ.get("HARBOUR_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"disk fault seed {seed} (replay with HARBOUR_TEST_SEED={seed})")
    rng = random.Random(seed)
    data_dir = powercut.path / "edge"
    edge = start_edge(data_dir, *FAST_SEALING)
    hammer = Hammer(rng, http)
    powercut.fault(op, nth=rng.randint(1, 20), error=error, times=times, prefix=powercut.inside(data_dir))
    stop, threads = hammer.run(edge.url, 1.5)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert powercut.clear_faults() > 0, "the fault never fired: the workload missed it"
    acked_during_fault = len(hammer.acked)
    for status, answer in hammer.refused:
        assert status in (500, 507), (status, answer)
        assert "not stored" in answer.get("hint", ""), answer
    if op == "write" and error == "ENOSPC":
        assert any(status == 507 and "disk is full" in answer["hint"] for status, answer in hammer.refused)
    hammer.refused.clear()
    stop, threads = hammer.run(edge.url, 0.5)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not hammer.refused and len(hammer.acked) > acked_during_fault, "the node did not recover from the fault"
    edge.kill()
    powercut.cut(powercut.inside(data_dir), rng.randrange(2**32), [edge.proc.pid])
    start_edge(data_dir, *FAST_SEALING)
    check_exactly_once(data_dir, hammer.acked)
