"""Request bodies -> Arrow tables, for the four content types of the ingest API (and, for the reference
datasets on board, an Arrow IPC stream -> JSON Lines).

Every decoder turns a malformed body into a ``RemoteProtocolError`` (400) that says which format was
expected and what the parser objected to, so the application's developer can fix the sender; a body
can never crash the node or be half-stored, because nothing is stored before it decoded completely.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from sync_protocol import ErrorCode, RemoteProtocolError, text_types
from sync_protocol.table_types import MAX_NESTING_DEPTH

from .config import MAX_REQUEST_BODY_BYTES

ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON_LINES = "application/x-ndjson"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
CONTENT_TYPES = (ARROW_STREAM, JSON_LINES, CSV, PARQUET)

MAX_DECODED_FACTOR = 16
"""A Parquet body may expand to at most this many times its size (or MAX_REQUEST_BODY_BYTES, whichever is
more) when decoded. Real data compresses 2.5-10x (perf-limits.md); far more is a decompression bomb."""

MIN_JSON_BLOCK_BYTES = 1024 * 1024
"""pyarrow.json parses in blocks and rejects a line that straddles two; one block per body avoids that."""

MAX_JSON_DEPTH = MAX_NESTING_DEPTH + 1
"""A row's object plus the deepest column the type rules allow. pyarrow's JSON reader takes time that grows with
the cube of the nesting (1,000 levels: 0.1 s; 2,000: 0.9 s; one 20 KiB line 10,000 deep held a worker for
minutes), so deeper bodies are refused before it sees them."""

DEPTH_SCAN_BYTES = 1024 * 1024
"""The bracket count runs over the body in slices this big: bounded memory for a 64 MiB body."""


def _malformed(kind: str, error: Exception) -> RemoteProtocolError:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return RemoteProtocolError(
        f"the body is not {kind}: {detail[:300]}", code=ErrorCode.BAD_REQUEST, op="decoding body",
        subject=kind, hint=f"send the body as {kind}, or set Content-Type to the format actually sent",
    )


def unsupported_type(content_type: str) -> RemoteProtocolError:
    shown = content_type[:80] or "(none)"
    return RemoteProtocolError(
        f"Content-Type {shown!r} is not accepted; use one of {', '.join(CONTENT_TYPES)}",
        code=ErrorCode.UNSUPPORTED_MEDIA_TYPE, op="decoding body", subject="Content-Type",
    )


def _arrow_stream(body: bytes) -> pa.Table:
    with pa_ipc.open_stream(pa.BufferReader(body)) as reader:
        table = reader.read_all()
    # Offsets and lengths in a hostile stream are only checked by a full validation.
    table.validate(full=True)
    return table


def _json_lines(body: bytes) -> pa.Table:
    """Read once to learn the columns, then again with those columns given (pyarrow's reader drops the
    nulls it meets in a list before it knows the list's type: ``[null, 0]`` became ``[0]``) and with every
    date or timestamp it guessed read as text, so that ``sync_protocol.text_types`` decides for JSON Lines
    and CSV alike. The second read only happens for bodies with lists, dates or timestamps."""
    _require_objects_per_line(body)
    _require_shallow_json(body)
    options = pa_json.ReadOptions(block_size=max(len(body) + 1, MIN_JSON_BLOCK_BYTES))
    table = pa_json.read_json(pa.BufferReader(body), read_options=options)
    if text_types.guessed_temporal(table.schema) or any(_has_list(field.type) for field in table.schema):
        as_text = pa.schema([pa.field(f.name, text_types.as_text_type(f.type)) for f in table.schema])
        table = pa_json.read_json(pa.BufferReader(body), read_options=options,
                                  parse_options=pa_json.ParseOptions(explicit_schema=as_text))
        table = pa.Table.from_arrays([pa.chunked_array([_repair_null_lists(chunk) for chunk in column.chunks],
                                                       type=column.type) for column in table.columns],
                                     names=table.column_names)
    return text_types.infer_columns(table)


def _repair_null_lists(array: pa.Array) -> pa.Array:
    """Even with its type given, pyarrow's JSON reader (26.0) builds a list of only nulls
    (``[null, null]``) with too short a child array, which fails validation; rebuilt here with a null
    per item. An array without such a list is returned as it is."""
    if not _has_list(array.type, of_nulls=True):
        return array
    if pa.types.is_struct(array.type):
        children = [_repair_null_lists(child) for child in array.flatten()]
        return pa.StructArray.from_arrays(children, fields=list(array.type), mask=array.is_null())
    offsets = array.offsets
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    if pa.types.is_null(array.type.value_type):
        values = pa.nulls(end - start)
    else:
        values = _repair_null_lists(array.values.slice(start, end - start))
    return pa.ListArray.from_arrays(pc.subtract(offsets, start), values, mask=array.is_null())


def _has_list(kind: pa.DataType, *, of_nulls: bool = False) -> bool:
    if pa.types.is_struct(kind):
        return any(_has_list(field.type, of_nulls=of_nulls) for field in kind)
    if pa.types.is_list(kind):
        return pa.types.is_null(kind.value_type) or not of_nulls or _has_list(kind.value_type, of_nulls=True)
    return False


_OPENING = np.zeros(256, np.int8)
_OPENING[[ord("["), ord("{")]] = 1
_OPENING[[ord("]"), ord("}")]] = -1


def _require_shallow_json(body: bytes) -> None:
    """Refuse a body with a line nested deeper than ``MAX_JSON_DEPTH``. Brackets are counted per line with numpy
    (about 0.6x the time pyarrow then takes to read the body), ignoring strings; only a line whose count goes too
    deep -- a real excess, or brackets inside its strings -- is walked exactly, in Python."""
    start, line_start, carry = 0, 0, 0  # carry: depth at ``start`` of a line longer than a slice
    while start < len(body):
        end = body.find(b"\n", start + DEPTH_SCAN_BYTES)
        end = len(body) if end < 0 else end + 1
        raw = np.frombuffer(body, np.uint8, end - start, start)
        running = np.cumsum(_OPENING[raw], dtype=np.int32) + carry
        newlines = np.flatnonzero(raw == 0x0A)
        starts = np.concatenate(([0], newlines + 1))
        starts = starts[starts < len(raw)]
        bases = np.concatenate(([0], running[newlines]))[:len(starts)]
        deepest = np.maximum.reduceat(running, starts) - bases
        for line in np.flatnonzero(deepest > MAX_JSON_DEPTH):
            _exact_json_depth(body, line_start if line == 0 else start + int(starts[line]))
        if raw[-1] == 0x0A:
            line_start, carry = end, 0
        else:
            line_start, carry = (start + int(starts[-1]) if len(starts) > 1 else line_start), int(
                running[-1] - bases[-1])
        start = end


def _exact_json_depth(body: bytes, line_start: int) -> None:
    """Walk one line (from ``line_start``), strings and escapes included."""
    line_end = body.find(b"\n", line_start)
    depth, in_string, escaped = 0, False, False
    for byte in body[line_start:len(body) if line_end < 0 else line_end]:
        if in_string:
            escaped, in_string = (False, True) if escaped else (byte == 0x5C, byte != 0x22)
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                line = body.count(b"\n", 0, line_start) + 1
                raise ValueError(f"line {line} is nested more than {MAX_NESTING_DEPTH} levels deep (objects and "
                                 f"arrays inside the row); Harbour stores at most {MAX_NESTING_DEPTH}")
        elif byte in (0x5D, 0x7D):
            depth -= 1


def _require_objects_per_line(body: bytes) -> None:
    """Every non-blank line must start a JSON object. pyarrow's reader crashes the whole process
    (SIGSEGV, pyarrow 26) on a body that is only ``null``, and turns a ``null`` line into a row of
    nulls; neither is a row anyone meant to write, so both are refused before pyarrow sees them."""
    for number, line in enumerate(body.split(b"\n"), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith(b"{"):
            raise ValueError(f"line {number} is not a JSON object: each line must be one row, {{\"column\": value}}")


def _csv(body: bytes) -> pa.Table:
    """As JSON Lines: dates, times and timestamps pyarrow guessed are read again as text and typed by
    ``sync_protocol.text_types``. CSV has no binary values: a column pyarrow could only read as binary
    is text that is not UTF-8, refused here rather than stored as bytes."""
    table = pa_csv.read_csv(pa.BufferReader(body))
    guessed = {f.name: pa.string() for f in table.schema if text_types.guessed_temporal(pa.schema([f]))}
    if guessed:
        # Read again as text, with the null markers ("", NA, ...) still null as they were for a date; the
        # other columns stay as first read (in a text column an empty field is the empty string).
        again = pa_csv.read_csv(pa.BufferReader(body), convert_options=pa_csv.ConvertOptions(
            column_types=guessed, strings_can_be_null=True))
        table = pa.Table.from_arrays([again.column(i) if name in guessed else table.column(i)
                                      for i, name in enumerate(table.column_names)], names=table.column_names)
    for field in table.schema:
        if pa.types.is_binary(field.type):
            raise ValueError(f"column {field.name!r} is not valid UTF-8 text (CSV bodies must be UTF-8)")
    return text_types.infer_columns(table)


def _fixed_row_bytes(schema: pa.Schema) -> int:
    width = 0
    for field in schema:
        try:
            width += max(field.type.bit_width // 8, 1)
        except ValueError:  # variable width: only checked as row groups are decoded
            continue
    return width


def _parquet(body: bytes) -> pa.Table:
    """Decoded row group by row group, so a bomb is stopped at the first group that crosses the bound;
    fixed-width columns are bounded before anything is decoded, from the row count alone."""
    parquet_file = pq.ParquetFile(pa.BufferReader(body))
    bound = max(MAX_DECODED_FACTOR * len(body), MAX_REQUEST_BODY_BYTES)
    if parquet_file.metadata.num_rows * _fixed_row_bytes(parquet_file.schema_arrow) > bound:
        raise ValueError(f"its {parquet_file.metadata.num_rows} rows would expand to more than {bound} bytes")
    groups, decoded = [], 0
    for index in range(parquet_file.num_row_groups):
        groups.append(parquet_file.read_row_group(index))
        decoded += groups[-1].nbytes
        if decoded > bound:
            raise ValueError(f"it would expand to more than {bound} bytes")
    table = pa.concat_tables(groups) if groups else parquet_file.schema_arrow.empty_table()
    table.validate(full=True)
    return table


_DECODERS = {
    ARROW_STREAM: ("an Arrow IPC stream", _arrow_stream),
    JSON_LINES: ("JSON Lines (one JSON object per line)", _json_lines),
    CSV: ("CSV with a header line", _csv),
    PARQUET: ("Parquet", _parquet),
}


def decode_body(content_type: str, body: bytes) -> pa.Table:
    """The rows of ``body``; ``content_type`` is the bare media type (no parameters)."""
    entry = _DECODERS.get(content_type.strip().lower())
    if entry is None:
        raise unsupported_type(content_type)
    kind, decoder = entry
    if not body:
        raise RemoteProtocolError(
            "the body is empty", code=ErrorCode.BAD_REQUEST, op="decoding body", subject=kind,
            hint="send at least a schema (Arrow, Parquet) or a header line (CSV)",
        )
    try:
        return decoder(body)
    except (pa.ArrowException, ValueError, OSError, TypeError, IndexError, KeyError) as error:
        raise _malformed(kind, error) from None


def encode_arrow_stream(data: pa.Table | pa.RecordBatch) -> bytes:
    """The client's wire form, also used by tests: one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa_ipc.new_stream(sink, data.schema) as writer:
        writer.write(data)
    return sink.getvalue().to_pybytes()


def json_lines_of_arrow_stream(source: BinaryIO) -> Iterator[bytes]:
    """An Arrow IPC stream as JSON Lines, one record batch at a time (memory bounded by a batch). Values JSON
    has no type for are written as text: dates and timestamps in ISO 8601 (what the ingest API reads back),
    decimals as their digits, binary as hex."""
    reader = pa_ipc.open_stream(source)
    for batch in reader:
        yield "".join(json.dumps(row, default=_json_text, separators=(",", ":")) + "\n"
                      for row in batch.to_pylist()).encode()


def _json_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if isoformat is not None else str(value)
