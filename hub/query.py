"""Read-only SQL over the merged tables (``harbour hub query``).

Each Delta table under ``DIR/tables`` is opened at its latest snapshot and registered in an in-memory
DuckDB as ``DeltaTable(...).to_pyarrow_dataset()`` (filter and projection push down; DuckDB's own delta
extension would have to be downloaded, which a hub without internet cannot). Then DuckDB's file access is
switched off and the configuration locked, so the SQL can read the tables and nothing else: no
``read_csv('/etc/...')``, no ``ATTACH``. DuckDB still writes to its own temp directory with external access
off (``COPY ... TO '.tmp/x.csv'`` landed under the caller's working directory), so only reading statements
are taken (``READ_ONLY_STATEMENTS``) and the temp directory is a private one, removed after the query. A
query runs at most ``--timeout`` seconds (DuckDB has no statement timeout: the connection is interrupted).
A hub writing at the same time is fine: a query sees the snapshot it opened.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
from deltalake import DeltaTable

from .layout import HubLayout
from .warehouse import list_tables

FORMATS = ("table", "json", "csv")
MAX_CELL_CHARS = 60
"""Wider cells are cut in the ``table`` format so a row fits a terminal; json and csv are never cut."""


DEFAULT_TIMEOUT_SECONDS = 300.0
"""Long enough for a scan of a large fleet table on a small hub; short enough that a runaway cross join does
not hold a core and gigabytes of memory until somebody notices (``--timeout`` changes it)."""

READ_ONLY_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
"""SELECT also covers WITH, FROM-first, VALUES, DESCRIBE, SHOW and SUMMARIZE; everything else (COPY, EXPORT,
ATTACH, SET, PRAGMA, INSERT, CREATE, ...) changes something, which a query of the fleet's tables never needs."""


class QueryError(Exception):
    """The SQL failed; the message is DuckDB's, with the tables that exist."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple]


def table_paths(layout: HubLayout) -> dict[str, str]:
    """Each merged table's location (a path or an s3:// URL), by name."""
    return list_tables(layout.warehouse_location)


def connect(layout: HubLayout, temp_directory: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config={"temp_directory": str(temp_directory)})
    for name, path in table_paths(layout).items():
        con.register(name, DeltaTable(path).to_pyarrow_dataset())
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def check_read_only(sql: str) -> None:
    """Refuse, before anything runs, SQL that is not one or more reading statements."""
    statements = duckdb.extract_statements(sql)  # a parser error is raised as it is: the caller explains it
    if not statements:
        raise QueryError("no SQL statement given, e.g. \"SELECT _site, count(*) FROM telemetry GROUP BY 1\"")
    refused = sorted({s.type.name for s in statements if s.type not in READ_ONLY_STATEMENTS})
    if refused:
        raise QueryError(f"only reading statements (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN) are taken; this SQL has "
                         f"{', '.join(refused)}. The merged tables are read-only here: export with the "
                         "--format csv|json of this command")


def run_query(layout: HubLayout, sql: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> QueryResult:
    try:
        check_read_only(sql)
    except duckdb.Error as error:
        raise QueryError(_explain(error, list(table_paths(layout)))) from None
    temp_directory = Path(tempfile.mkdtemp(prefix="harbour-query-"))
    con = connect(layout, temp_directory)
    timer = threading.Timer(timeout, con.interrupt)
    timer.start()
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        rows = cursor.fetchall() if cursor.description else []
    except duckdb.InterruptException:
        raise QueryError(f"the query ran longer than {timeout:g} s and was stopped; narrow it (WHERE, LIMIT) or "
                         "give a longer --timeout") from None
    except duckdb.Error as error:
        raise QueryError(_explain(error, list(table_paths(layout)))) from None
    finally:
        timer.cancel()
        con.close()
        shutil.rmtree(temp_directory, ignore_errors=True)
    return QueryResult(columns, rows)


_DUCKDB_SUGGESTION = re.compile(r"\s*Did you mean \"[^\"]*\"\?")
_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist")


def _explain(error: duckdb.Error, tables: list[str]) -> str:
    """DuckDB's message, without its suggestions of DuckDB's own catalog (``Did you mean "sqlite_master"?``),
    with the closest merged table for a mistyped name and the list of tables that exist."""
    message = _DUCKDB_SUGGESTION.sub("", str(error))
    missing = _MISSING_TABLE.search(message)
    if missing:
        close = difflib.get_close_matches(missing.group(1).lower(), tables, n=1)
        if close:
            message = message.replace(missing.group(0), f"{missing.group(0)} (did you mean {close[0]}?)", 1)
    return f"{message} -- tables: {', '.join(tables) or 'none yet (nothing has been merged)'}"


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
