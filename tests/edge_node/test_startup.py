"""The first steps of `harbour edge run`: the data directory's lock, then the port, then the description."""

from __future__ import annotations

import os
import socket

import pytest

from edge_node.dir_lock import LOCK_FILE, DataDirLock, LockHolder, read_holder, this_host
from edge_node.startup import StartupError, claim, listening_socket


def clock() -> float:
    return 1_800_000_000.0


def test_claim_locks_binds_and_describes_the_process(tmp_path):
    claimed = claim(tmp_path, "127.0.0.1", 0, clock, token="t0k")
    try:
        described = read_holder(tmp_path)
        assert described == LockHolder(os.getpid(), this_host(), 1_800_000_000.0, "harbour edge run", token="t0k")
        assert described.listen is None  # not answering yet: `release` must not knock
        claimed.serving()
        assert read_holder(tmp_path).listen == claimed.listen == f"127.0.0.1:{claimed.sock.getsockname()[1]}"
        with pytest.raises(StartupError, match="is in use by `harbour edge run`"):
            claim(tmp_path, "127.0.0.1", 0, clock, token="other")
    finally:
        claimed.release()
    claim(tmp_path, "127.0.0.1", 0, clock, token="again").release()  # both let go


def test_a_taken_port_is_one_line_frees_the_lock_and_changes_nothing(tmp_path):
    (tmp_path / LOCK_FILE).write_bytes(b"left by a crashed run\n")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(StartupError) as refused:
            claim(tmp_path, "127.0.0.1", port, clock, token="t")
    message = str(refused.value)
    assert message.startswith(f"cannot listen on 127.0.0.1:{port}: address already in use;") and "\n" not in message
    assert "--listen HOST:PORT" in message and f"sport = :{port}" in message
    assert (tmp_path / LOCK_FILE).read_bytes() == b"left by a crashed run\n"
    with DataDirLock.acquire(tmp_path):
        pass


def test_an_unknown_host_is_one_line():
    with pytest.raises(StartupError, match=r"cannot listen on no-such-host\.invalid:1: .*check --listen"):
        listening_socket("no-such-host.invalid", 1)


def test_localhost_binds_ipv4_first():
    with listening_socket("localhost", 0) as sock:
        assert sock.family == socket.AF_INET


def test_a_data_directory_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StartupError, match="cannot use"):
        claim(tmp_path / "file" / "data", "127.0.0.1", 0, clock, token="t")
