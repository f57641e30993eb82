"""The power-cut filesystem itself: what a cut keeps (what was fsync'd) and what it loses (all the rest)."""

from __future__ import annotations

import errno
import os

import pytest


def _fsync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_unsynced_writes_are_lost_and_synced_ones_kept(powercut):
    path = powercut.path / "a.log"
    with open(path, "wb") as file:
        file.write(b"durable")
        file.flush()
        os.fsync(file.fileno())
        file.write(b" and lost" * 200)
        file.flush()
    _fsync_dir(powercut.path)
    assert path.read_bytes().startswith(b"durable and lost")
    powercut.cut("/", 0)
    data = path.read_bytes()
    assert data.startswith(b"durable")
    assert len(data) <= len(b"durable" + b" and lost" * 200)


def test_drop_tear_and_zeros_never_touch_synced_bytes(powercut):
    seen = set()
    for seed in range(40):
        path = powercut.path / f"f{seed}"
        with open(path, "wb") as file:
            file.write(b"A" * 1000)
            file.flush()
            os.fsync(file.fileno())
            for _ in range(5):
                file.write(b"B" * 700)
                file.flush()
        _fsync_dir(powercut.path)
        powercut.cut("/", seed)
        data = path.read_bytes()
        assert data[:1000] == b"A" * 1000
        tail = data[1000:]
        assert set(tail) <= {ord("B"), 0}
        seen.add("lost" if not tail else "zeros" if 0 in tail else "torn" if len(tail) % 700 else "prefix")
    assert {"lost", "torn", "zeros"} <= seen


def test_directory_entries_need_a_directory_fsync(powercut):
    (powercut.path / "kept").mkdir()
    _fsync_dir(powercut.path)
    with open(powercut.path / "kept" / "synced-entry", "wb") as file:
        os.fsync(file.fileno())
    _fsync_dir(powercut.path / "kept")
    with open(powercut.path / "kept" / "unsynced-entry", "wb") as file:
        file.write(b"x")
        file.flush()
        os.fsync(file.fileno())  # the data, not the name
    (powercut.path / "gone").mkdir()
    os.rename(powercut.path / "kept" / "synced-entry", powercut.path / "kept" / "renamed")
    powercut.cut("/", 1)
    assert sorted(os.listdir(powercut.path / "kept")) == ["synced-entry"]
    assert not (powercut.path / "gone").exists()


def test_a_durable_rename_survives_and_an_unlink_can_come_back(powercut):
    for name in ("old", "victim"):
        with open(powercut.path / name, "wb") as file:
            file.write(name.encode())
            file.flush()
            os.fsync(file.fileno())
    _fsync_dir(powercut.path)
    os.replace(powercut.path / "old", powercut.path / "new")
    _fsync_dir(powercut.path)
    os.unlink(powercut.path / "victim")
    powercut.cut("/", 2)
    assert (powercut.path / "new").read_bytes() == b"old"
    assert (powercut.path / "victim").read_bytes() == b"victim"
    assert not (powercut.path / "old").exists()


def test_a_cut_is_scoped_to_its_subtree(powercut):
    for name in ("edge", "hub"):
        (powercut.root / name).mkdir()
        with open(powercut.path / name / "f", "wb") as file:
            file.write(b"unsynced")
    powercut.cut("/edge", 3)
    assert not (powercut.path / "edge" / "f").exists()
    assert (powercut.path / "hub" / "f").read_bytes() == b"unsynced"


@pytest.mark.parametrize("op, error", [("write", "ENOSPC"), ("fsync", "EIO"), ("rename", "EIO")])
def test_the_nth_operation_fails_once(powercut, op, error):
    powercut.fault(op, nth=2, error=error)
    with open(powercut.path / "f", "wb") as file:
        os.write(file.fileno(), b"1")
        os.fsync(file.fileno())
        os.rename(powercut.path / "f", powercut.path / "g") if op == "rename" else None
        with pytest.raises(OSError) as raised:
            os.write(file.fileno(), b"2")
            os.fsync(file.fileno())
            os.rename(powercut.path / "g", powercut.path / "h")
        assert raised.value.errno == getattr(errno, error)
    assert powercut.clear_faults() == 1
