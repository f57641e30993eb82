"""``edge_node.durable.make_dirs``: a directory it makes survives a power cut; one made by a bare mkdir may not."""

from __future__ import annotations

import os

from edge_node.durable import make_dirs


def _fsynced_file(path) -> None:
    with open(path, "wb") as file:
        file.write(b"acknowledged")
        file.flush()
        os.fsync(file.fileno())
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the file's own entry: durable
    finally:
        os.close(fd)


def test_a_directory_made_durably_keeps_its_synced_files_through_a_power_cut(powercut):
    make_dirs(powercut.path / "data" / "wal" / "telemetry")
    (powercut.path / "bare" / "wal").mkdir(parents=True)
    for top in ("data", "bare"):
        _fsynced_file(powercut.path / top / "wal" / "f")
    powercut.cut("/", 1)
    assert (powercut.path / "data" / "wal" / "f").read_bytes() == b"acknowledged"
    assert (powercut.path / "data" / "wal" / "telemetry").is_dir()
    assert not (powercut.path / "bare").exists(), "the layer kept a directory nobody made durable"


def test_an_existing_directory_costs_nothing(powercut):
    (powercut.root / "there").mkdir()
    before = powercut.stats()["dir_fsyncs"]
    make_dirs(powercut.path / "there")
    assert powercut.stats()["dir_fsyncs"] == before
