"""The warehouse in an S3-compatible object store (``--warehouse s3://BUCKET/PREFIX``), against a real S3 server
(moto's, as a child process: it honours the conditional writes delta-rs commits versions with).

What is proven here: a hub merges into S3 exactly once, `hub query` reads the tables there from another
process, two hub processes of a cluster (one PostgreSQL ledger, one staging directory, one S3 warehouse) merge
one table's segments without losing or doubling any, two writers racing for the same Delta version cannot
both win, and a missing bucket or unreachable endpoint is one clear line at start.
What is not: AWS itself (its consistency and conditional writes are documented, not tested here), MinIO, R2.
"""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from .conftest import Hub, chain, free_port, harbour

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def object_store():
    from scenarios.services import ObjectStore

    with ObjectStore() as store:
        yield store


@pytest.fixture
def s3(object_store, monkeypatch, request):
    """A fresh bucket, and the AWS_* environment every hub process and command of the test inherits."""
    for name, value in object_store.environment().items():
        monkeypatch.setenv(name, value)
    bucket = f"wh-{request.node.name.lower().replace('_', '-')[:40]}".strip("-")
    return object_store.create_bucket(bucket)


@pytest.mark.guarantee("G3")
def test_a_hub_merges_into_an_s3_warehouse_exactly_once_and_queries_it(tmp_path, s3):
    hub = Hub(tmp_path / "hub", free_port(), tmp_path / "hub.log",
              places=("--warehouse", f"{s3}/fleet/tables/")).start()
    try:
        token = hub.add_site("ship-a")
        for segment in chain("ship-a", "telemetry", 4, rows_per=250):
            assert hub.upload(token, segment).committed
        hub.wait_merged(1000, "telemetry")
        (counts,) = hub.query("SELECT count(*) AS n, count(DISTINCT row_id) AS d FROM telemetry")
        assert counts == {"n": 1000, "d": 1000}
    finally:
        hub.stop()
    # The tables are in the bucket, not on the hub's disk; another command (another process) reads them there.
    assert not (tmp_path / "hub" / "tables").exists()
    listed = harbour("hub", "query", "--data", str(tmp_path / "hub"), "--warehouse", f"{s3}/fleet/tables",
                     "--format", "json", "SELECT count(*) AS n FROM telemetry")
    assert '"n": 1000' in listed.stdout


@pytest.mark.guarantee("G3")
def test_two_cluster_processes_share_one_s3_warehouse(tmp_path, s3, postgres_url):
    places = ("--ledger", postgres_url, "--staging", str(tmp_path / "staging"), "--warehouse", f"{s3}/tables")
    hubs = [Hub(tmp_path / f"hub{i}", free_port(), tmp_path / f"hub{i}.log", places=places).start() for i in (0, 1)]
    try:
        tokens = {site: hubs[0].add_site(site) for site in ("ship-a", "ship-b")}
        uploads = [threading.Thread(target=lambda site=site, hub=hub: [
            hub.upload(tokens[site], segment) for segment in chain(site, "telemetry", 5, rows_per=100)])
            for site, hub in zip(tokens, hubs, strict=True)]
        for upload in uploads:
            upload.start()
        for upload in uploads:
            upload.join(timeout=120)
        hubs[1].wait_merged(1000, "telemetry", timeout=120)
        (counts,) = hubs[1].query("SELECT count(*) AS n, count(DISTINCT (_site, row_id)) AS d FROM telemetry")
        assert counts == {"n": 1000, "d": 1000}
    finally:
        for hub in hubs:
            hub.stop()


def test_two_writers_racing_for_one_delta_version_cannot_both_win(s3):
    """The property the shared warehouse rests on: delta-rs commits version N with a conditional write, so of
    two writers that both read version N-1, one commits and the other gets a conflict -- never an overwrite."""
    from deltalake import DeltaTable, write_deltalake

    uri = f"{s3}/race"
    write_deltalake(uri, pa.table({"n": [0]}))
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def append(n: int) -> None:
        barrier.wait()
        try:
            write_deltalake(uri, pa.table({"n": [n]}), mode="append")
            outcomes.append("committed")
        except Exception as error:  # noqa: BLE001 -- the conflict is what is looked for
            outcomes.append(type(error).__name__)

    writers = [threading.Thread(target=append, args=(n,)) for n in range(1, 5)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    table = DeltaTable(uri)
    committed = outcomes.count("committed")
    # Every write that said it committed is in the table, and nothing else: no lost or doubled append.
    assert table.to_pyarrow_table().num_rows == 1 + committed
    assert table.version() == committed
    assert committed >= 1 and len(outcomes) == 4


def test_a_missing_bucket_is_one_clear_line_at_start(tmp_path, s3):
    result = harbour("hub", "run", "--data", str(tmp_path / "hub"), "--listen", f"127.0.0.1:{free_port()}",
                     "--warehouse", "s3://no-such-bucket/tables", check=False)
    assert result.returncode == 1
    assert "bucket 'no-such-bucket' does not exist" in result.stderr and "Traceback" not in result.stderr
    assert "harbour-test-secret" not in result.stderr


@pytest.mark.parametrize("warehouse, complaint", [
    ("gs://bucket/tables", "takes a directory or an s3://BUCKET/PREFIX URL"),
    ("s3://B/tables", "is not an S3 bucket name"),
    ("s3://bucket/a//b", "empty, '.' or '..' part"),
    ("s3://bucket/../x", "empty, '.' or '..' part"),
])
def test_a_bad_warehouse_url_is_a_usage_error(tmp_path, warehouse, complaint):
    result = harbour("hub", "status", "--data", str(tmp_path), "--warehouse", warehouse, check=False)
    assert result.returncode == 2 and complaint in result.stderr
