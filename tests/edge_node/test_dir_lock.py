"""One process per edge data directory (issue 12, item 1).

The unit tests pin the lock itself; the integration tests replay the loss the issue reports with real
``harbour edge run`` processes: a second node on a directory in use used to recover and seal the first
one's open log and delete it, so that 20 of 30 acknowledged rows were gone after a restart.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from edge_node.client import EdgeClient
from edge_node.dir_lock import LOCK_FILE, DataDirInUse, DataDirLock, LockHolder, read_holder, this_host

REPO = Path(__file__).resolve().parents[2]
REFUSAL_SECONDS = 5.0
"""A refused start takes ~0.15 s here (no heavy import, no recovery); 5 s keeps a loaded CI machine green
while still failing the old behaviour, which recovered the whole directory first."""


def holder(**changes) -> LockHolder:
    fields = {"pid": os.getpid(), "host": this_host(), "started": 1_800_000_000.0, "command": "harbour edge run"}
    return LockHolder(**{**fields, **changes})


# -- the lock -------------------------------------------------------------------------------------


def test_a_second_holder_is_refused_with_the_first_ones_description(tmp_path):
    with DataDirLock.acquire(tmp_path) as lock:
        lock.record(holder(listen="127.0.0.1:8701", token="secret"))
        with pytest.raises(DataDirInUse) as refused:
            DataDirLock.acquire(tmp_path, hint="stop it first")
    message = str(refused.value)
    assert f"pid {os.getpid()} on {this_host()}" in message and "listening on 127.0.0.1:8701" in message
    assert "harbour edge run" in message and "2027-01-15" in message and message.endswith("stop it first")
    assert "secret" not in message and "\n" not in message
    assert refused.value.holder.token == "secret"


def test_released_lock_can_be_taken_again_and_the_file_stays(tmp_path):
    lock = DataDirLock.acquire(tmp_path)
    lock.record(holder())
    lock.release()
    lock.release()  # twice is harmless
    with DataDirLock.acquire(tmp_path):
        pass
    assert (tmp_path / LOCK_FILE).exists()


def test_acquire_writes_nothing_until_record(tmp_path):
    (tmp_path / LOCK_FILE).write_bytes(holder(pid=1, command="harbour edge release").to_bytes())
    before = (tmp_path / LOCK_FILE).read_bytes()
    with DataDirLock.acquire(tmp_path) as lock:
        assert (tmp_path / LOCK_FILE).read_bytes() == before
        lock.record(holder(listen="[::1]:9"))
        assert read_holder(tmp_path) == holder(listen="[::1]:9")


def test_lock_file_is_private_and_created_with_the_directory(tmp_path):
    with DataDirLock.acquire(tmp_path / "new" / "data"):
        mode = (tmp_path / "new" / "data" / LOCK_FILE).stat().st_mode & 0o777
    assert mode == 0o600  # it holds the token `harbour edge release` shows the running node


@pytest.mark.parametrize("content", [b"", b"{", b"[1, 2]", b'{"pid": 0, "host": "h", "started": 1, "command": "x"}',
                                     b'{"pid": 5, "host": "h", "started": 1, "command": "x", "extra": 1}'])
def test_a_garbled_or_empty_description_reads_as_nobody(tmp_path, content):
    (tmp_path / LOCK_FILE).write_bytes(content)
    assert read_holder(tmp_path) is None


def test_a_holder_that_never_describes_itself_is_still_refused(tmp_path):
    with DataDirLock.acquire(tmp_path), pytest.raises(DataDirInUse, match="has not described itself"):
        DataDirLock.acquire(tmp_path)


def _hold_in_child(data_dir: Path) -> subprocess.Popen:
    code = ("import sys, time; from pathlib import Path; from edge_node.dir_lock import DataDirLock, LockHolder;"
            "lock = DataDirLock.acquire(Path(sys.argv[1]));"
            "lock.record(LockHolder(1234567, 'elsewhere', 0.0, 'harbour edge run'));"
            "print('held', flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE, cwd=REPO)
    assert child.stdout.readline().strip() == b"held"
    return child


@pytest.mark.guarantee("G1")
def test_sigkill_frees_the_lock_and_the_stale_file_does_not_block(tmp_path):
    child = _hold_in_child(tmp_path)
    try:
        with pytest.raises(DataDirInUse, match="pid 1234567 on elsewhere"):
            DataDirLock.acquire(tmp_path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert read_holder(tmp_path).pid == 1234567  # what a dead process left behind...
    with DataDirLock.acquire(tmp_path) as lock:  # ...is only a description, not a lock
        lock.record(holder())


# -- with real processes ---------------------------------------------------------------------------


def _harbour(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harbour_cli", "edge", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _refused_untouched(data_dir: Path, listen: str) -> str:
    """Start a node that must be refused: one line, no traceback, quickly, and DIR exactly as it was."""
    before = _snapshot(data_dir)
    started = time.monotonic()
    result = _harbour("run", "--site", "ship-1", "--data", str(data_dir), "--listen", listen, timeout=60)
    seconds = time.monotonic() - started
    assert result.returncode != 0 and result.stdout == ""
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert seconds < REFUSAL_SECONDS, f"refused only after {seconds:.1f} s"
    assert _snapshot(data_dir) == before
    return result.stderr.strip()


def _snapshot(data_dir: Path) -> dict[str, str]:
    """Every file's digest, but SQLite's shared-memory index (readers write their marks into it)."""
    return {str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data_dir.rglob("*")) if p.is_file() and not p.name.endswith("-shm")}


def _rows(start: int, count: int) -> pa.Table:
    return pa.table({"n": list(range(start, start + count)), "note": [f"row {i}" for i in range(start, start + count)]})


def _count(data_dir: Path) -> int:
    result = _harbour("query", "--data", str(data_dir), "--format", "csv", "SELECT count(*) AS n FROM events")
    assert result.returncode == 0, result.stderr
    return int(result.stdout.splitlines()[1])


@pytest.mark.guarantee("G1")
@pytest.mark.integration
def test_a_second_node_on_a_directory_in_use_is_refused_and_nothing_acknowledged_is_lost(tmp_path, start_edge):
    data = tmp_path / "ship-data"
    first = start_edge(data)
    client = EdgeClient(first.url)
    assert client.write("events", _rows(0, 10)) == 10  # in the open log, as in the issue

    address = first.url.removeprefix("http://")
    for listen in ("127.0.0.1:0", address):  # another port, then the same one: the directory is named first
        message = _refused_untouched(data, listen)
        assert f"pid {first.proc.pid}" in message and f"listening on {address}" in message
        assert str(data) in message and "nothing in it was read or changed" in message

    assert client.write("events", _rows(10, 20)) == 20  # the first node carries on, into a log that still exists
    assert _count(data) == 30  # read-only commands work while the node runs
    assert _harbour("status", "--data", str(data)).returncode == 0

    first.kill()  # SIGKILL: the lock file stays behind, the lock does not
    second = start_edge(data)
    assert _count(data) == 30
    assert EdgeClient(second.url).write("events", _rows(30, 1)) == 1
    assert _count(data) == 31


@pytest.mark.integration
def test_a_port_in_use_is_one_line_and_no_recovery_runs(tmp_path, start_edge):
    """The directory holds what a crash left (an unsealed log); a node that cannot bind must not touch it."""
    data = tmp_path / "crashed"
    crashed = start_edge(data)
    EdgeClient(crashed.url).write("events", _rows(0, 7))
    crashed.kill()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        message = _refused_untouched(data, f"127.0.0.1:{port}")
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in message
    assert _count(data) == 7
