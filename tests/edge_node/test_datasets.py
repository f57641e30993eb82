"""The on-board dataset store: durable partials, verified atomic switches, and a crash at every step."""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pytest

from edge_node.datasets import (
    FSYNC_EVERY_BYTES,
    PARTIAL,
    PARTIAL_RECORD,
    POINTER,
    DatasetStore,
    version_file,
)
from sync_protocol.dataset_states import DatasetState
from sync_protocol.downlink import DatasetOffer


def arrow_bytes(version: int, rows: int = 20_000) -> bytes:
    table = pa.table({"sku": pa.array(range(rows)), "price": pa.array([float(version)] * rows)})
    sink = io.BytesIO()
    with pa_ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def offer_of(version: int, data: bytes, name: str = "offers") -> DatasetOffer:
    return DatasetOffer(name, version, hashlib.sha256(data).hexdigest(), len(data))


@pytest.fixture
def store(tmp_path):
    return DatasetStore(tmp_path, clock=lambda: 1000.0)


def fetch_all(store: DatasetStore, offer: DatasetOffer, data: bytes, piece: int = 16 * 1024):
    partial = store.partial(offer, 0)
    partial.open(0)
    for start in range(0, len(data), piece):
        if partial.write(data[start:start + piece]):
            partial.checkpoint()
    partial.checkpoint()
    partial.close()
    assert store.partial_sha256(offer.name) == offer.sha256
    return store.switch(offer)


def test_a_version_is_stored_byte_identical_with_its_rows_and_read_back(store):
    data = arrow_bytes(1)
    held = fetch_all(store, offer_of(1, data), data)
    assert (held.version, held.rows, held.size, held.switched_at) == (1, 20_000, len(data), 1000.0)
    found, handle = store.open_current("offers")
    with handle:
        assert handle.read() == data
    assert found == held and store.names() == ["offers"] and store.bytes_on_disk() == len(data)
    assert store.open_current("menus") is None


@pytest.mark.guarantee("G3")
def test_a_kill_mid_download_keeps_only_the_fsynced_length_and_resumes_there(store):
    data = arrow_bytes(1)
    offer = offer_of(1, data)
    partial = store.partial(offer, 0)
    partial.open(0)
    partial.write(data[:FSYNC_EVERY_BYTES // 2])
    partial.checkpoint()
    durable = partial.durable
    partial.write(data[durable:durable + 5000])  # in the page cache only: a power cut may tear it
    partial._handle.flush()
    # SIGKILL here: the process is gone, the file holds more than was recorded
    fetches = DatasetStore(store.root.parent, clock=lambda: 0).recover()
    fetch = fetches["offers"]
    assert (fetch.state, fetch.offset, fetch.target) == (DatasetState.DOWNLOADING, durable, offer)
    assert (store.root / "offers" / PARTIAL).stat().st_size == durable  # the torn tail is fetched again
    resumed = store.partial(offer, fetch.offset)
    resumed.open(fetch.start())
    resumed.write(data[durable:])
    resumed.checkpoint()
    resumed.close()
    assert store.partial_sha256("offers") == offer.sha256


def test_the_offset_record_is_written_only_after_the_fsync(store, monkeypatch):
    data = arrow_bytes(1)
    partial = store.partial(offer_of(1, data), 0)
    partial.open(0)
    partial.write(data[:1000])
    order = []
    monkeypatch.setattr("edge_node.datasets.os.fsync", lambda fd: order.append("fsync"))
    monkeypatch.setattr(partial, "record", lambda: order.append("record"))
    partial.checkpoint()
    assert order[:2] == ["fsync", "record"]


@pytest.mark.parametrize("damage", ["no record", "unreadable record", "record without data"])
def test_a_partial_without_a_usable_record_starts_again(store, damage):
    data = arrow_bytes(1)
    partial = store.partial(offer_of(1, data), 0)
    partial.open(0)
    partial.write(data[:70_000])
    partial.checkpoint()
    partial.close()
    directory = store.root / "offers"
    if damage == "no record":
        (directory / PARTIAL_RECORD).unlink()
    elif damage == "unreadable record":
        (directory / PARTIAL_RECORD).write_bytes(b"{\"name\": \"off")
    else:
        (directory / PARTIAL).unlink()
    fetch = store.recover()["offers"]
    assert fetch.offset == 0
    if damage != "record without data":
        assert fetch.state is DatasetState.ABSENT and not (directory / PARTIAL).exists()


def test_a_kill_between_the_rename_and_the_pointer_finishes_the_switch_at_start(store):
    one, two = arrow_bytes(1), arrow_bytes(2)
    fetch_all(store, offer_of(1, one), one)
    offer = offer_of(2, two)
    partial = store.partial(offer, 0)
    partial.open(0)
    partial.write(two)
    partial.checkpoint()
    partial.close()
    directory = store.root / "offers"
    (directory / PARTIAL).rename(directory / version_file(2))  # killed right after the rename
    assert store.held("offers").version == 1
    fetch = store.recover()["offers"]
    assert (fetch.state, fetch.held) == (DatasetState.CURRENT, offer)
    assert store.held("offers").version == 2 and not (directory / PARTIAL_RECORD).exists()


def test_a_kill_after_the_pointer_drops_the_stale_partial_record(store):
    data = arrow_bytes(1)
    held = fetch_all(store, offer_of(1, data), data)
    directory = store.root / "offers"
    (directory / PARTIAL_RECORD).write_text(json.dumps({**held.offer.__dict__, "offset": held.size}))
    fetch = store.recover()["offers"]
    assert fetch.state is DatasetState.CURRENT and not (directory / PARTIAL_RECORD).exists()


def test_a_kill_while_writing_the_pointer_leaves_the_old_pointer(store):
    data = arrow_bytes(1)
    fetch_all(store, offer_of(1, data), data)
    directory = store.root / "offers"
    (directory / (POINTER + ".tmp")).write_bytes(b'{"name": "offers", "vers')  # the torn new pointer
    store.recover()
    assert store.held("offers").version == 1 and not (directory / (POINTER + ".tmp")).exists()


def test_a_reader_keeps_its_version_through_a_switch_and_old_versions_go_at_the_next_switch(store):
    versions = {v: arrow_bytes(v, rows=1000 * v) for v in (1, 2, 3)}
    fetch_all(store, offer_of(1, versions[1]), versions[1])
    held, handle = store.open_current("offers")
    fetch_all(store, offer_of(2, versions[2]), versions[2])
    with handle:
        assert handle.read() == versions[1]  # opened before the switch: all of the old version
    assert store.open_current("offers")[0].version == 2
    directory = store.root / "offers"
    assert (directory / version_file(1)).exists()  # kept for readers until the next switch
    fetch_all(store, offer_of(3, versions[3]), versions[3])
    assert sorted(p.name for p in directory.glob("v*.arrows")) == [version_file(2), version_file(3)]


def test_a_resume_may_not_start_past_the_durable_bytes(store):
    data = arrow_bytes(1)
    partial = store.partial(offer_of(1, data), 0)
    with pytest.raises(ValueError, match="durable"):
        partial.open(10)
    partial.open(0)
    with pytest.raises(ValueError, match="more than"):
        partial.write(data + b"x")
