"""Status: pending, acked and the age of the oldest pending row, online and offline."""

import pyarrow as pa

from edge_node.config import EdgeConfig
from edge_node.node import EdgeNode
from edge_node.runner import offline_status
from edge_node.status import render_text
from sync_protocol import SiteId, TableName


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_offline_status_counts_log_segments_and_acks(tmp_path):
    clock = Clock()
    node = EdgeNode(EdgeConfig(SiteId("ship-1"), tmp_path), clock)
    node.recover()
    await node.write(TableName("t"), pa.table({"v": [1, 2, 3]}))
    node.roll_all()
    node.seal_and_collect()
    await node.write(TableName("t"), pa.table({"v": [4]}))
    (segment,) = node.ledger.pending_segments()
    node.ledger.mark_uploading(segment.manifest.segment)
    node.ledger.mark_acked(segment.manifest.segment)
    clock.now += 30
    report = offline_status(tmp_path, clock)
    (table,) = report["tables"]
    assert report["site"] == "ship-1"
    assert (table["log_rows"], table["pending_rows"], table["pending_segments"]) == (1, 1, 0)
    assert (table["acked_rows"], table["acked_segments"]) == (3, 1)
    assert table["oldest_pending_age_seconds"] == 30.0
    assert report["last_successful_sync"] == 1000.0
    text = render_text(report)
    assert "ship-1" in text and "oldest pending" in text and "30 s" in text
    await node.stop()


def test_status_of_a_new_directory(tmp_path):
    report = offline_status(tmp_path / "new", Clock())
    assert report["site"] is None and report["tables"] == []
    assert "(none yet)" in render_text(report)


def test_datasets_on_board_and_fetches_under_way_are_shown_online_and_offline(tmp_path, seed_dataset):
    seed_dataset(tmp_path, "offers", 2, pa.table({"sku": [1, 2, 3]}))
    report = offline_status(tmp_path, lambda: 2000.0)
    assert [(d["name"], d["version"], d["rows"]) for d in report["datasets"]] == [("offers", 2, 3)]
    assert "dataset offers: version 2," in render_text(report) and "3 rows" in render_text(report)
    report["sync"] = {"downloads": [{"name": "menus", "fetching": 4, "offset": 1024, "size": 4096, "priority": 3,
                                     "waiting": "class 3 is held back on a thin link"}]}
    assert ("dataset menus: fetching version 4 (1.0 KiB of 4.0 KiB, class 3) -- waiting: class 3 is held back on "
            "a thin link") in render_text(report)
