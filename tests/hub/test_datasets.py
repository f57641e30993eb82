"""Dataset versions at the hub (``hub.datasets``): numbering, who is offered what, pruning, 404 and 410.
The store tests run on both ledger databases (the ``database`` fixture: SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
import threading

import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.dataset_files import convert
from hub.datasets import (
    KEEP_LATEST_VERSIONS,
    LARGEST_SETTINGS_BYTES,
    MAX_VERSION,
    STALE_STAGING_SECONDS,
    DatasetStore,
    DatasetVersion,
    versions_to_prune,
)
from sync_protocol.downlink import MAX_DATASET_BYTES, DatasetOffer, DesiredState
from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.identifiers import SiteId, TableName

OFFERS = TableName("offers")


def write_csv(path, rows: int, first: int = 0):
    path.write_text("sku,price\n" + "".join(f"s{i},{i}.5\n" for i in range(first, first + rows)))
    return path


@pytest.fixture
def store(database, layout, clock):
    return DatasetStore(database, layout.datasets, clock)


def publish(store, tmp_path, rows: int = 3, ships=None, sites=("ship-1", "ship-2"), name=OFFERS):
    source = write_csv(tmp_path / f"in-{rows}.csv", rows)
    converted = convert(source, store.staging_file(f"t{rows}-{id(ships)}"))
    return store.publish(name, converted, ships, sites)


def test_versions_count_up_per_dataset_and_the_file_is_the_published_stream(store, tmp_path):
    first, _ = publish(store, tmp_path, 3)
    second, _ = publish(store, tmp_path, 4)
    other, _ = publish(store, tmp_path, 2, name=TableName("menus"))
    assert (first.version, second.version, other.version) == (1, 2, 1)
    data = store.file_of("offers", 2).read_bytes()
    assert hashlib.sha256(data).hexdigest() == second.sha256 and len(data) == second.size
    assert pa_ipc.open_stream(data).read_all().num_rows == 4 == second.rows
    assert not list(store.directory.glob(".publishing-*"))  # the staging file became the version


def test_offers_are_the_newest_version_each_ship_may_have(store, tmp_path):
    publish(store, tmp_path, 1)  # v1: every ship
    publish(store, tmp_path, 2, ships=[SiteId("ship-1")])  # v2: ship-1 only
    assert {o.name: o.version for o in store.offers("ship-1")} == {"offers": 2}
    assert {o.name: o.version for o in store.offers("ship-2")} == {"offers": 1}
    assert {o.name: o.version for o in store.offers("ship-new")} == {"offers": 1}
    offer = store.offers("ship-1")[0]
    assert offer.etag == f'"sha256:{offer.sha256}"' and offer.path == "/v1/sync/datasets/offers/versions/2"


def test_download_rules_404_for_another_ships_version_410_once_pruned(store, tmp_path):
    publish(store, tmp_path, 1, ships=[SiteId("ship-1")])
    assert store.servable("ship-1", "offers", 1).version == 1
    for site, name, version in [("ship-2", "offers", 1), ("ship-1", "offers", 9), ("ship-1", "menus", 1),
                                ("ship-1", "offers", 2**62)]:
        with pytest.raises(RemoteProtocolError) as caught:
            store.servable(site, name, version)
        assert caught.value.code is ErrorCode.DATASET_NOT_FOUND
    for rows in (2, 3, 4):
        publish(store, tmp_path, rows, ships=[SiteId("ship-1")])
    with pytest.raises(RemoteProtocolError) as caught:
        store.servable("ship-1", "offers", 1)
    assert caught.value.code is ErrorCode.DATASET_GONE and caught.value.status == 410
    assert not store.file_of("offers", 1).exists() and store.file_of("offers", 4).exists()
    with pytest.raises(RemoteProtocolError) as caught:  # never offered to ship-2: 404 even though pruned
        store.servable("ship-2", "offers", 1)
    assert caught.value.code is ErrorCode.DATASET_NOT_FOUND


def test_pruning_keeps_the_newest_for_every_ship_and_the_last_versions(store, tmp_path):
    publish(store, tmp_path, 1)  # v1 all
    publish(store, tmp_path, 2, ships=[SiteId("ship-2")])  # v2 ship-2
    for rows in (3, 4, 5):
        publish(store, tmp_path, rows, ships=[SiteId("ship-1")])  # v3..v5 ship-1
    live = [v.version for v in store.versions() if v.pruned_at is None]
    # v1: newest for ships registered later; v2: newest for ship-2; v4, v5: the last two
    assert live == [1, 2, 4, 5]
    assert [v.version for v in store.versions() if v.pruned_at is not None] == [3]
    assert sorted(p.name for p in (store.directory / "offers").iterdir()) == ["1.arrows", "2.arrows", "4.arrows",
                                                                             "5.arrows"]


def version(number: int, ships=None, pruned=False) -> DatasetVersion:
    return DatasetVersion("d", number, "0" * 64, 1, 1, 1, "csv", ships, 0.0, 1.0 if pruned else None)


@pytest.mark.parametrize("versions, sites, pruned", [
    ([version(1), version(2), version(3)], [], [1]),
    ([version(1), version(2, ("a",)), version(3, ("a",))], ["a", "b"], []),  # v1: newest for b and for all
    ([version(1, ("b",)), version(2, ("a",)), version(3, ("a",)), version(4, ("a",))], ["a"], [1, 2]),
    ([version(1, pruned=True), version(2), version(3), version(4)], ["a"], [2]),
])
def test_prune_rule(versions, sites, pruned):
    assert versions_to_prune(versions, sites) == pruned
    assert KEEP_LATEST_VERSIONS == 2


SITES = ("a", "b", "c")


@given(st.lists(st.tuples(st.one_of(st.none(), st.sets(st.sampled_from(SITES), min_size=1)), st.booleans()),
                min_size=1, max_size=12))
def test_pruning_never_takes_what_some_ship_is_offered(spec):
    versions = [version(n, None if ships is None else tuple(sorted(ships)), pruned)
                for n, (ships, pruned) in enumerate(spec, start=1)]
    pruned = set(versions_to_prune(versions, SITES))
    live = [v for v in versions if v.pruned_at is None]
    assert pruned <= {v.version for v in live}  # only live versions are pruned
    assert not pruned & {v.version for v in live[-KEEP_LATEST_VERSIONS:]}
    for site in (*SITES, "registered-later"):
        offered = [v.version for v in live if v.offered_to(site)]
        assert not offered or offered[-1] not in pruned  # what the ship's next answer offers stays


def test_concurrent_publishes_never_share_a_number(database, layout, tmp_path):
    """Each thread has its own connection (as separate processes would): the write lock and the key decide."""
    store = DatasetStore(database, layout.datasets, lambda: 0.0)
    sources = [write_csv(tmp_path / f"c{i}.csv", 2, first=i) for i in range(6)]
    converted = [convert(source, store.staging_file(f"c{i}")) for i, source in enumerate(sources)]
    numbers, errors = [], []

    def run(item) -> None:
        try:
            numbers.append(store.publish(OFFERS, item, None, [])[0].version)
        except Exception as error:  # noqa: BLE001 -- reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(item,)) for item in converted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and sorted(numbers) == [1, 2, 3, 4, 5, 6]
    digests = {v.version: v.sha256 for v in store.versions()}
    for number in (5, 6):
        assert hashlib.sha256(store.file_of("offers", number).read_bytes()).hexdigest() == digests[number]


def test_a_hub_limits_how_many_datasets_it_offers(store, tmp_path, monkeypatch):
    monkeypatch.setattr("hub.datasets.MAX_DATASETS_OFFERED", 2)
    publish(store, tmp_path, 1, name=TableName("a"))
    publish(store, tmp_path, 1, name=TableName("b"))
    publish(store, tmp_path, 2, name=TableName("b"))  # a new version of a known dataset is fine
    with pytest.raises(RemoteProtocolError) as caught:
        publish(store, tmp_path, 1, name=TableName("c"))
    assert "already holds 2 datasets" in str(caught.value)


def test_dataset_names_must_leave_room_in_the_desired_state(store, tmp_path, monkeypatch):
    two = DesiredState(tuple(DatasetOffer(n, MAX_VERSION, "0" * 64, MAX_DATASET_BYTES) for n in ("a", "b")))
    monkeypatch.setattr("hub.datasets.MAX_DESIRED_BYTES", LARGEST_SETTINGS_BYTES + len(two.to_json()))
    publish(store, tmp_path, 1, name=TableName("a"))
    publish(store, tmp_path, 1, name=TableName("b"))
    with pytest.raises(RemoteProtocolError, match="larger than the protocol allows"):
        publish(store, tmp_path, 1, name=TableName("c"))
    assert [v.name for v in store.versions()] == ["a", "b"]


def test_a_download_reading_a_pruned_file_finishes(store, tmp_path):
    publish(store, tmp_path, 5)
    with open(store.file_of("offers", 1), "rb") as reading:
        first = reading.read(10)
        for rows in (6, 7):
            publish(store, tmp_path, rows)
        assert store.version("offers", 1).pruned_at is not None and not store.file_of("offers", 1).exists()
        data = first + reading.read()
    assert hashlib.sha256(data).hexdigest() == store.version("offers", 1).sha256


def test_a_publish_killed_between_its_rename_and_its_commit_leaves_nothing_offered(store, tmp_path):
    orphan = store.file_of("offers", 1)  # renamed into place, then the process died before the commit
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"a version nobody committed")
    assert store.offers("ship-1") == () and store.versions() == []
    with pytest.raises(RemoteProtocolError):
        store.servable("ship-1", "offers", 1)  # never served: no row names it
    made, _ = publish(store, tmp_path, 3)
    assert made.version == 1 and hashlib.sha256(orphan.read_bytes()).hexdigest() == made.sha256


def test_files_of_killed_publishes_are_swept_after_a_day(store, clock):
    left = store.staging_file("killed")
    left.write_bytes(b"half a stream")
    os.utime(left, (clock() - 3600, clock() - 3600))
    store.staging_file("next")
    assert left.exists()  # an hour old: maybe a publish still converting
    clock.advance(STALE_STAGING_SECONDS)
    store.staging_file("later")
    assert not left.exists()


def test_when_each_ship_first_reported_holding_a_version(store, clock, tmp_path):
    publish(store, tmp_path, 1)  # offers v1, every ship
    publish(store, tmp_path, 2, name=TableName("menus"))
    publish(store, tmp_path, 3, name=TableName("menus"), ships=[SiteId("ship-1")])  # menus v2: ship-1 only
    store.note_held("ship-1", {"offers": 1})
    clock.advance(60)
    store.note_held("ship-1", {"offers": 1, "menus": 2})  # offers 1 again: its first time stays
    store.note_held("ship-2", {"menus": 2, "offers": 7, "invented": 1})  # not offered to it, or never published
    store.note_held("ship-12", {"menus": 2})  # ship-1 is not ship-12
    assert store.held_since() == {("ship-1", "offers", 1): clock() - 60, ("ship-1", "menus", 2): clock()}


def test_the_file_path_cannot_leave_the_directory(store):
    with pytest.raises(RemoteProtocolError):
        store.file_of("../etc", 1)
    assert store.file_of("offers", 3).parent == store.directory / "offers"


def test_an_empty_table_is_a_version_too(store, tmp_path):
    source = tmp_path / "empty.csv"
    source.write_text("sku,price\n")
    made, _ = store.publish(OFFERS, convert(source, store.staging_file("e")), None, [])
    table = pa_ipc.open_stream(store.file_of("offers", made.version).read_bytes()).read_all()
    assert table.num_rows == 0 and table.column_names == ["sku", "price"] and isinstance(table, pa.Table)


@pytest.mark.integration
def test_a_publish_woken_after_the_server_ended_its_transaction_leaves_the_committed_file(postgres_url, layout,
                                                                                          tmp_path):
    """A publish frozen past ``IDLE_IN_TRANSACTION_TIMEOUT`` after reading ``MAX(version)``: the server ended its
    transaction and another publish committed that number. Waking, it must not put its file over that one."""
    import psycopg

    from hub.datasets import _place_version_file
    from hub.postgres import PostgresDatabase

    database = PostgresDatabase(postgres_url)
    try:
        store = DatasetStore(database, layout.datasets, lambda: 0.0)
        committed, _ = publish(store, tmp_path, 3)  # the other publish, which took version 1 and committed
        late = convert(write_csv(tmp_path / "late.csv", 5), store.staging_file("late"))
        final = store.file_of("offers", 1)
        with pytest.raises(psycopg.Error), database.write() as db:
            pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
            with psycopg.connect(postgres_url, autocommit=True) as server:
                server.execute("SELECT pg_terminate_backend(%s)", [pid])  # as the idle timeout does
            _place_version_file(db, late.path, final, "offers", 1)
        assert hashlib.sha256(final.read_bytes()).hexdigest() == committed.sha256
        assert store.version("offers", 1).sha256 == committed.sha256
    finally:
        database.close()


def test_a_file_system_without_hard_links_still_takes_publishes(store, tmp_path, monkeypatch):
    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted")  # EPERM, as an SMB share answers

    monkeypatch.setattr(os, "link", no_links)
    first, _ = publish(store, tmp_path, 3)
    second, _ = publish(store, tmp_path, 4)
    for made in (first, second):
        assert hashlib.sha256(store.file_of("offers", made.version).read_bytes()).hexdigest() == made.sha256
    assert not list(store.directory.glob(".publishing-*"))
