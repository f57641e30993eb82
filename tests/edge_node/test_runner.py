"""Rendering query results for people and programs."""

import json

import pyarrow as pa

from edge_node.runner import render_result

TABLE = pa.table({"name": ["a", None], "n": [1, 22]})


def test_table_format_aligns_and_counts():
    text = render_result(TABLE, "table")
    assert text.splitlines()[0] == "name | n"
    assert "NULL | 22" in text and text.rstrip().endswith("(2 rows)")


def test_json_and_csv():
    assert json.loads(render_result(TABLE, "json")) == [{"name": "a", "n": 1}, {"name": None, "n": 22}]
    assert render_result(TABLE, "csv").splitlines()[0] == '"name","n"'


def test_the_node_rng_replays_from_its_seed_and_differs_per_ship(tmp_path):
    """``--seed`` replays a node's back-off jitter; the ships of one scenario share a seed, not their draws."""
    from edge_node.config import EdgeConfig
    from edge_node.runner import seeded_rng
    from sync_protocol import SiteId

    def draws(site: str, seed: int | None) -> list[float]:
        rng = seeded_rng(EdgeConfig(SiteId(site), tmp_path, seed=seed))
        return [rng.random() for _ in range(5)]

    assert draws("ship-1", 7) == draws("ship-1", 7)
    assert draws("ship-1", 7) != draws("ship-2", 7)
    assert draws("ship-1", None) != draws("ship-1", None)
