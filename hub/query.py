"""Read-only SQL over the merged tables (``harbour hub query``).

Each Delta table under ``DIR/tables`` is opened at its latest snapshot and registered in an in-memory
DuckDB as ``DeltaTable(...).to_pyarrow_dataset()`` (filter and projection push down; DuckDB's own delta
extension would have to be downloaded, which a hub without internet cannot). Then DuckDB's file access is
switched off and the configuration locked, so the SQL can read the tables and nothing else: no
``COPY ... TO``, no ``read_csv('/etc/...')``, no ``ATTACH``. A hub writing at the same time is fine: a
query sees the snapshot it opened.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
from deltalake import DeltaTable

from sync_protocol.identifiers import TABLE_NAME_PATTERN

from .layout import HubLayout

FORMATS = ("table", "json", "csv")
MAX_CELL_CHARS = 60
"""Wider cells are cut in the ``table`` format so a row fits a terminal; json and csv are never cut."""


class QueryError(Exception):
    """The SQL failed; the message is DuckDB's, with the tables that exist."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple]


def table_paths(layout: HubLayout) -> dict[str, Path]:
    found = {}
    if layout.tables.is_dir():
        for path in sorted(layout.tables.iterdir()):
            if TABLE_NAME_PATTERN.fullmatch(path.name) and (path / "_delta_log").is_dir():
                found[path.name] = path
    return found


def connect(layout: HubLayout) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    for name, path in table_paths(layout).items():
        con.register(name, DeltaTable(str(path)).to_pyarrow_dataset())
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def run_query(layout: HubLayout, sql: str) -> QueryResult:
    con = connect(layout)
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        rows = cursor.fetchall() if cursor.description else []
    except duckdb.Error as error:
        tables = ", ".join(table_paths(layout)) or "none yet (nothing has been merged)"
        raise QueryError(f"{error} -- tables: {tables}") from None
    finally:
        con.close()
    return QueryResult(columns, rows)


def _json_value(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def format_result(result: QueryResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{c: _json_value(v) for c, v in zip(result.columns, row, strict=True)}
                           for row in result.rows], default=str)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([["" if v is None else _json_value(v) for v in row] for row in result.rows])
        return out.getvalue().rstrip("\n")
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.append(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    return "\n".join(lines)


def _cell(value) -> str:
    text = "NULL" if value is None else str(_json_value(value))
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 3] + "..."
