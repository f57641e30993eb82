"""A published file -> the one form every ship receives: an Arrow IPC *stream*, written once, hashed as written.

``harbour hub publish`` takes what head office has: Parquet, CSV, Arrow IPC (file or stream) or JSON Lines. The
format is told by the file's first bytes where it has magic bytes (Parquet ``PAR1``, Arrow IPC file ``ARROW1``,
Arrow IPC stream ``0xFFFFFFFF``), else by its extension (``EXTENSIONS``), else by a first non-blank ``{`` (JSON
Lines). Anything else is refused with the list of what is accepted.

Values follow the tables' one type system (``sync_protocol.table_types``/``table_values``): the same storage
types (int64, float64, UTC microsecond timestamps, ...), the same column-name rules, the same reading of dates in
CSV and JSON Lines (``sync_protocol.text_types``). A ship reads a dataset with the same SQL habits as its tables.

Parquet and Arrow inputs are converted batch by batch (memory bounded by one row group or record batch); CSV and
JSON Lines are read whole, because deciding what a text column holds needs all of its values. The output is
hashed while it is written and fsynced before it is handed on; the caller renames it into place.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq

from sync_protocol import text_types
from sync_protocol.downlink import MAX_DATASET_BYTES
from sync_protocol.errors import RemoteProtocolError
from sync_protocol.table_types import column_problems
from sync_protocol.table_values import to_storage

FORMATS = ("parquet", "arrow-file", "arrow-stream", "csv", "jsonl")
"""What ``--input-format`` names; ``auto`` tells them apart (module docstring)."""

EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
              ".pq": "parquet", ".arrow": "arrow-file", ".feather": "arrow-file", ".arrows": "arrow-stream"}
"""By extension, when the first bytes do not tell: text formats, and binary files whose magic bytes are missing
(damaged, or a pre-0.15 Arrow stream without the continuation marker): they get the format's own error."""

IPC_COMPRESSION = "zstd"
"""Buffers of the published stream are zstd-compressed: the link is what costs (reference data such as price lists
compress 3-10x), and every Arrow reader Harbour uses (pyarrow, DuckDB through pyarrow) reads them transparently."""

MAX_TEXT_INPUT_BYTES = 512 * 1024 * 1024
"""CSV and JSON Lines are read whole (see the module docstring): 512 MiB of text is far more than any reference
list and still fits the memory of a head-office machine several times over."""

WRITE_CHUNK_ROWS = 64 * 1024
"""Rows per record batch of the output stream: a ship can read a batch at a time."""

MAGIC_BYTES = 8


class DatasetFileError(Exception):
    """The file cannot become a dataset; the message names the file and says what to do."""


@dataclass(frozen=True)
class ConvertedFile:
    path: Path  # the canonical Arrow IPC stream, fsynced, not yet in place
    sha256: str
    size: int
    rows: int
    columns: int
    source_format: str


def detect_format(path: Path) -> str:
    """One of ``FORMATS`` for ``path``, from its magic bytes, extension or first character."""
    with open(path, "rb") as handle:
        head = handle.read(MAGIC_BYTES)
        if not head:
            raise DatasetFileError(f"{path} is empty: publish a file with at least a schema or a header line")
        if head.startswith(b"PAR1"):
            return "parquet"
        if head.startswith(b"ARROW1"):
            return "arrow-file"
        if head.startswith(b"\xff\xff\xff\xff"):
            return "arrow-stream"
        if path.suffix.lower() in EXTENSIONS:
            return EXTENSIONS[path.suffix.lower()]
        start = (head + handle.read(4096)).lstrip()
    if start.startswith(b"{"):
        return "jsonl"
    raise DatasetFileError(
        f"cannot tell what format {path} is: it is not Parquet, Arrow IPC (file or stream) by its first bytes, and "
        f"its name does not end in {', '.join(EXTENSIONS)}; rename it or give --input-format "
        f"({', '.join(FORMATS)})")


def convert(source: Path, target: Path, fmt: str = "auto",
            progress: Callable[[int, int], None] = lambda rows, size: None) -> ConvertedFile:
    """Write ``source`` as the canonical Arrow IPC stream at ``target`` (fsynced); ``DatasetFileError`` if it
    cannot be read or its columns cannot be held. ``target`` is removed again on any failure. ``progress`` is
    called with the rows and bytes written so far after each batch."""
    if not source.is_file():
        raise DatasetFileError(f"{source} is not a file")
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise DatasetFileError(f"--input-format {fmt!r} is not one of auto, {', '.join(FORMATS)}")
    try:
        return _convert(source, target, fmt, progress)
    except BaseException:  # a refused file, or Ctrl-C: no half-written stream is left behind
        target.unlink(missing_ok=True)
        raise


def _convert(source: Path, target: Path, fmt: str, progress: Callable[[int, int], None]) -> ConvertedFile:
    try:
        schema, batches = _READERS[fmt](source)
        if not len(schema):
            raise DatasetFileError(f"{source} has no columns: a dataset needs at least one")
        problems = column_problems(schema, subject=str(source))
        if problems:
            raise DatasetFileError(f"{source}: {problems[0].message}")
        return _write(target, fmt, schema, batches, progress)
    except (pa.ArrowException, ValueError, OSError, TypeError, IndexError, KeyError, RemoteProtocolError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatasetFileError(f"{source} is not valid {fmt} ({detail[:300]})") from None


def _write(target: Path, fmt: str, schema: pa.Schema, batches: Iterator[pa.Table],
           progress: Callable[[int, int], None]) -> ConvertedFile:
    sink = _HashingFile(target)
    rows, written_schema, writer = 0, None, None
    try:
        options = pa_ipc.IpcWriteOptions(compression=IPC_COMPRESSION)
        for table in batches:
            table = to_storage(table)
            if writer is None:
                written_schema = table.schema
                writer = pa_ipc.new_stream(sink, written_schema, options=options)
            writer.write_table(table.cast(written_schema), max_chunksize=WRITE_CHUNK_ROWS)
            rows += table.num_rows
            progress(rows, sink.size)
        if writer is None:  # no rows at all: the stream still carries the schema
            written_schema = to_storage(schema.empty_table()).schema
            writer = pa_ipc.new_stream(sink, written_schema, options=options)
        writer.close()
        sink.finish()
    finally:
        sink.close()
    return ConvertedFile(target, sink.sha256.hexdigest(), sink.size, rows, len(written_schema), fmt)


class _HashingFile:
    """A binary file pyarrow writes to that hashes and counts every byte and stops at ``MAX_DATASET_BYTES``."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 -- closed by close()
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data)
        self.size += view.nbytes
        if self.size > MAX_DATASET_BYTES:
            raise DatasetFileError(f"the dataset would be larger than {MAX_DATASET_BYTES} bytes as an Arrow stream: "
                                   "reference data is sent to every ship; publish a smaller extract")
        self.sha256.update(view)
        return self._file.write(view)

    def flush(self) -> None:
        self._file.flush()

    def finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._file.close()

    @property
    def writable(self) -> bool:
        return True


# -- readers: (schema, iterator of tables) per format ----------------------------------------------------


def _parquet(path: Path):
    parquet_file = pq.ParquetFile(path)
    return parquet_file.schema_arrow, (pa.Table.from_batches([b]) for b in parquet_file.iter_batches())


def _arrow_file(path: Path):
    reader = pa_ipc.open_file(path)
    return reader.schema, (_validated(reader.get_batch(i)) for i in range(reader.num_record_batches))


def _arrow_stream(path: Path):
    reader = pa_ipc.open_stream(pa.OSFile(str(path)))
    return reader.schema, (_validated(batch) for batch in reader)


def _validated(batch: pa.RecordBatch) -> pa.Table:
    batch.validate(full=True)  # offsets and lengths in a damaged file are only checked by a full validation
    return pa.Table.from_batches([batch])


def _text(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_TEXT_INPUT_BYTES:
        raise DatasetFileError(f"{path} is {size} bytes of text; CSV and JSON Lines are read whole, at most "
                               f"{MAX_TEXT_INPUT_BYTES}: convert it to Parquet first")
    return path.read_bytes()


def _csv(path: Path):
    body = _text(path)
    table = pa_csv.read_csv(pa.BufferReader(body))
    guessed = {f.name: pa.string() for f in table.schema if text_types.guessed_temporal(pa.schema([f]))}
    if guessed:  # dates are decided by sync_protocol.text_types, as for the tables (see edge_node/codecs.py)
        table = pa_csv.read_csv(pa.BufferReader(body), convert_options=pa_csv.ConvertOptions(
            column_types=guessed, strings_can_be_null=True))
    for field in table.schema:  # pyarrow reads text that is not UTF-8 as binary
        if pa.types.is_binary(field.type):
            raise DatasetFileError(f"{path}: column {field.name!r} is not UTF-8 text (CSV must be UTF-8)")
    table = text_types.infer_columns(table)
    return table.schema, iter([table])


def _json_lines(path: Path):
    """Parsed with ``json`` and typed by ``pyarrow.array``'s inference (the same Arrow types as pyarrow's JSON
    reader: int64, double, bool, string, struct, list), not with ``pyarrow.json``, whose reader drops the nulls in
    a list (``[null, 0]`` became ``[0]``: edge_node/codecs.py reads every body twice to repair that). Reference
    data is megabytes; the columns are the union of every row's keys, in the order first met."""
    rows = []
    for number, line in enumerate(_text(path).split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as error:
            raise DatasetFileError(f"{path} line {number} is not valid JSON ({str(error)[:200]})") from None
        if not isinstance(row, dict):
            raise DatasetFileError(f"{path} line {number} is not a JSON object: JSON Lines holds one object per row")
        rows.append(row)
    names = list(dict.fromkeys(key for row in rows for key in row))
    table = pa.table({name: pa.array([row.get(name) for row in rows]) for name in names})
    table = text_types.infer_columns(table)
    return table.schema, iter([table])


_READERS = {"parquet": _parquet, "arrow-file": _arrow_file, "arrow-stream": _arrow_stream, "csv": _csv,
            "jsonl": _json_lines}
