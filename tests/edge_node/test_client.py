"""EdgeClient and AsyncEdgeClient against a real edge process: rows in, server messages out."""

import pyarrow as pa
import pytest

from edge_node.client import AsyncEdgeClient, EdgeClient, EdgeUnavailable, EdgeWriteError
from sync_protocol import ErrorCode

pytestmark = pytest.mark.integration


def test_write_table_and_batch(shared_edge):
    client = EdgeClient(shared_edge.url)
    assert client.write("client_rows", pa.table({"v": [1, 2, 3]})) == 3
    assert client.write("client_rows", pa.table({"v": [4]}).to_batches()[0]) == 1
    assert any(t["table"] == "client_rows" for t in client.status()["tables"])


def test_refusal_carries_the_server_message(shared_edge):
    client = EdgeClient(shared_edge.url)
    client.write("client_kinds", pa.table({"v": [1]}))
    with pytest.raises(EdgeWriteError) as caught:
        client.write("client_kinds", pa.table({"v": ["text"]}))
    error = caught.value
    assert error.status == 400 and error.code is ErrorCode.BAD_REQUEST
    assert "'v'" in error.message and "'v'" in str(error) and error.hint
    assert str(error).count(error.hint) == 1  # the edge's message carries its hint already: said once


def test_bad_table_name_and_bad_argument(shared_edge):
    client = EdgeClient(shared_edge.url)
    with pytest.raises(EdgeWriteError, match="table name"):
        client.write("Bad-Name", pa.table({"v": [1]}))
    with pytest.raises(TypeError, match="pyarrow Table or RecordBatch"):
        client.write("t", [{"v": 1}])


def test_unreachable_edge_is_edge_unavailable(unused_tcp_port):
    with pytest.raises(EdgeUnavailable, match="did not answer"):
        EdgeClient(f"http://127.0.0.1:{unused_tcp_port}", timeout=2).write("t", pa.table({"v": [1]}))


async def test_async_client(shared_edge, unused_tcp_port):
    async with AsyncEdgeClient(shared_edge.url) as client:
        assert await client.write("client_async", pa.table({"v": [1, 2]})) == 2
        with pytest.raises(EdgeWriteError) as caught:
            await client.write("client_async", pa.table({"v": ["x"]}))
        assert caught.value.status == 400
    async with AsyncEdgeClient(f"http://127.0.0.1:{unused_tcp_port}") as client:
        with pytest.raises(EdgeUnavailable):
            await client.write("t", pa.table({"v": [1]}))


@pytest.mark.parametrize("url", ["127.0.0.1:8701", "localhost", "ftp://127.0.0.1:8701", ""])
def test_a_url_without_http_is_a_usage_error_at_once(url):
    for client in (EdgeClient, AsyncEdgeClient):
        with pytest.raises(ValueError, match="must start with http:// or https://"):
            client(url)


def test_dataset_returns_the_current_version_as_a_table(tmp_path, start_edge, seed_dataset):
    from edge_node.client import DatasetNotFound

    prices = pa.table({"sku": [1, 2], "price": [9.5, 3.0]})
    seed_dataset(tmp_path / "edge", "offers", 3, prices)
    client = EdgeClient(start_edge(tmp_path / "edge").url)
    dataset = client.dataset("offers")
    assert (dataset.name, dataset.version, dataset.table.to_pylist()) == ("offers", 3, prices.to_pylist())
    with pytest.raises(DatasetNotFound, match="menus"):
        client.dataset("menus")
