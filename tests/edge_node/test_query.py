"""Local SQL over segments and the log, consistent while the sealer runs (no row twice, none missing)."""

import asyncio

import pyarrow as pa
import pytest

from edge_node.config import EdgeConfig
from edge_node.node import EdgeNode
from edge_node.query import run_query
from sync_protocol import SiteId, TableName


@pytest.fixture
async def node(tmp_path):
    edge = EdgeNode(EdgeConfig(SiteId("ship-1"), tmp_path / "edge"), lambda: 1000.0)
    edge.recover()
    yield edge
    await edge.stop()


async def test_sees_sealed_and_unsealed_rows_with_site(node):
    await node.write(TableName("t"), pa.table({"v": [1, 2]}))
    node.roll_all()
    node.seal_and_collect()
    await node.write(TableName("t"), pa.table({"v": [3]}))
    result = run_query(node.data_dir, "SELECT v, _site FROM t ORDER BY v").to_pylist()
    assert result == [{"v": 1, "_site": "ship-1"}, {"v": 2, "_site": "ship-1"}, {"v": 3, "_site": "ship-1"}]


async def test_widened_column_reads_across_segments(node):
    await node.write(TableName("t"), pa.table({"v": pa.array([1], pa.int32())}))
    node.roll_all()
    node.seal_and_collect()
    await node.write(TableName("t"), pa.table({"v": pa.array([2**40], pa.int64()), "w": ["new"]}))
    result = run_query(node.data_dir, "SELECT v, w FROM t ORDER BY v").to_pylist()
    assert result == [{"v": 1, "w": None}, {"v": 2**40, "w": "new"}]


async def test_a_table_named_like_an_sql_keyword_does_not_break_every_query(node):
    """Found by fuzzing: one write to a table named ``null`` made every local query a syntax error."""
    await node.write(TableName("null"), pa.table({"v": [1]}))
    node.roll_all()
    node.seal_and_collect()
    await node.write(TableName("order"), pa.table({"v": [2]}))
    await node.write(TableName("t"), pa.table({"v": [3]}))
    assert run_query(node.data_dir, 'SELECT (SELECT v FROM "null") + (SELECT v FROM "order") + v AS s FROM t') \
        .to_pylist() == [{"s": 6}]


async def test_counts_stay_exact_while_sealing_runs(node):
    """Queries race the sealer thread; each must see every row exactly once."""
    for i in range(30):
        await node.write(TableName("t"), pa.table({"v": list(range(i * 10, i * 10 + 10))}))
        node.wal.roll("t")
    loop = asyncio.get_running_loop()
    sealing = loop.run_in_executor(None, node.seal_and_collect)
    counts = []
    while not sealing.done():
        counts.append(await loop.run_in_executor(None, run_query, node.data_dir,
                                                 "SELECT COUNT(*) AS n, COUNT(DISTINCT v) AS d FROM t"))
    await sealing
    assert counts and all(c.to_pylist() == [{"n": 300, "d": 300}] for c in counts)


def test_statements_without_result_and_empty_dirs(tmp_path):
    assert run_query(tmp_path / "new", "CREATE TEMP TABLE x (a INT)").num_rows == 0


def test_reference_datasets_are_views_in_the_reference_schema(tmp_path, seed_dataset):
    seed_dataset(tmp_path, "offers", 1, pa.table({"sku": [1, 2], "price": [9.5, 3.0]}))
    result = run_query(tmp_path, "SELECT sum(price) AS total FROM reference.offers")
    assert result.to_pylist() == [{"total": 12.5}]
