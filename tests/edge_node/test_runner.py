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
