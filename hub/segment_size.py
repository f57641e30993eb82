"""How many bytes a segment's rows take once decoded, from its Parquet footer, before the merger reads it.

The merger reads a segment whole, so its memory follows the *decoded* size, which a Parquet file does not bound:
20 million constant rows fit in 74 KB (issue 16, finding 1), and so do a million copies of one long string.
The footer's own sizes do not help: ``total_uncompressed_size`` is the size of the *encoded* pages before
compression, and dictionary and run-length encoding keep that small too (the 74 KB file: 4 KB; a gigabyte of
one repeated 1,000-byte string: 109 KB, its dictionary page included). So the size is computed per column chunk:

* a fixed-width leaf (numbers, booleans, timestamps, fixed-length binary): its value count times its width, from
  the footer alone;
* a variable-width leaf (strings, binary) without a dictionary: at most its encoded size plus a 4-byte offset per
  value (PLAIN and DELTA_LENGTH_BYTE_ARRAY pages hold every byte of every value);
* a variable-width leaf with a dictionary page (or prefix-encoded, DELTA_BYTE_ARRAY, where one stored byte can
  stand for many): exactly, by reading that one column chunk *as a dictionary* (indices and distinct values: the
  size of the encoded data, not of the decoded column) and summing the lengths its indices pick.

Each chunk is read alone, so this holds at most one column chunk's indices and dictionary at a time. What it
cannot see is a footer that lies about a chunk's encoding or value count; the reader then fails or reads what
the footer says, and the merger's own check (``hub.merger``) repeats this one before reading.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FIXED_WIDTH_BYTES = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}
"""Bytes per value of each Parquet physical type in Arrow (a boolean is a bit; counted as a byte, for the
validity bitmap beside it). FIXED_LEN_BYTE_ARRAY is its type length, at least 32: a decimal becomes a 16- or
32-byte Arrow decimal whatever its stored length."""

OFFSET_BYTES = 4
"""Arrow's offset per string, binary or list value."""

PREFIX_BATCH_ROWS = 1024
"""Values decoded at once from a prefix-encoded chunk, which pyarrow cannot read as a dictionary: memory stays at
about a thousand values' length past the limit. A file crafted so that each value is much longer than the one
before can still cost that much once; Harbour's edge and pyarrow never write this encoding unasked."""


def decoded_bytes(source: Path | pa.NativeFile, stop_above: int | None = None) -> int:
    """The Arrow bytes the rows of the Parquet file ``source`` decode to (a close upper estimate; exact for
    strings). Stops counting once past ``stop_above``, so a file far over a limit costs no more reading than one
    just over it. Raises what pyarrow raises for a file that is not Parquet."""
    with pq.ParquetFile(source) as parquet:
        metadata, arrow = parquet.metadata, parquet.schema_arrow
    schema = metadata.schema
    top_level = {field.name: field.type for field in arrow}
    total = 0
    dictionaries: list[tuple[int, str]] = []
    prefixed: list[tuple[int, str]] = []
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            column = schema.column(index)
            values = chunk.num_values
            total += values * OFFSET_BYTES * column.max_repetition_level  # list offsets
            if chunk.physical_type == "FIXED_LEN_BYTE_ARRAY":
                total += values * max(column.length or 0, 32)
            elif chunk.physical_type in FIXED_WIDTH_BYTES:
                total += values * _width(chunk.physical_type, top_level.get(column.path))
            elif chunk.has_dictionary_page or "RLE_DICTIONARY" in chunk.encodings:
                total += values * OFFSET_BYTES
                dictionaries.append((group, column.path))
            elif "DELTA_BYTE_ARRAY" in chunk.encodings:
                prefixed.append((group, column.path))
            else:
                total += values * OFFSET_BYTES + chunk.total_uncompressed_size
    for group, path in prefixed:
        if stop_above is not None and total > stop_above:
            return total
        total += _batched_bytes(source, group, path, None if stop_above is None else stop_above - total)
    if not dictionaries or (stop_above is not None and total > stop_above):
        return total
    with pq.ParquetFile(source, read_dictionary=sorted({path for _, path in dictionaries})) as reader:
        for group, path in dictionaries:  # one column chunk at a time, its values never decoded
            table = reader.read_row_group(group, columns=[path])
            total += sum(_dictionary_bytes(chunk) for column in table.columns for chunk in column.chunks)
            del table
            if stop_above is not None and total > stop_above:
                break
    return total


def _batched_bytes(source: Path | pa.NativeFile, group: int, path: str, stop_above: int | None) -> int:
    """The decoded bytes of one column chunk, read ``PREFIX_BATCH_ROWS`` values at a time and given up on past
    ``stop_above``: for prefix encoding, where each value may repeat most of the one before."""
    total = 0
    with pq.ParquetFile(source) as reader:
        for batch in reader.iter_batches(PREFIX_BATCH_ROWS, row_groups=[group], columns=[path], use_threads=False):
            total += batch.nbytes
            if stop_above is not None and total > stop_above:
                break
    return total


def _width(physical_type: str, arrow_type: pa.DataType | None) -> int:
    """Bytes per value of a fixed-width leaf: its Arrow type's for a top-level column (an int8 is stored as a
    Parquet INT32), else its physical type's."""
    try:
        return max(arrow_type.bit_width // 8, 1) if arrow_type is not None else FIXED_WIDTH_BYTES[physical_type]
    except ValueError:  # not a fixed-width Arrow type after all
        return FIXED_WIDTH_BYTES[physical_type]


def _dictionary_bytes(array: pa.Array) -> int:
    if isinstance(array, pa.DictionaryArray):
        lengths = pc.binary_length(array.dictionary)
        return pc.sum(pc.take(lengths, array.indices)).as_py() or 0
    if isinstance(array, pa.StructArray):
        return sum(_dictionary_bytes(field) for field in array.flatten())
    if isinstance(array, pa.MapArray):
        return _dictionary_bytes(array.keys) + _dictionary_bytes(array.items)
    if isinstance(array, pa.ListArray | pa.LargeListArray | pa.FixedSizeListArray):
        return _dictionary_bytes(array.flatten())
    return array.nbytes  # not read as a dictionary (the reader decoded it): its decoded size is its size
