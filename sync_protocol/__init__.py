"""Harbour's sync protocol: the pure core both the edge and the hub speak.

No I/O lives here -- no asyncio, aiohttp, sqlite3, sockets, files, clocks or randomness; those are
passed in by the callers (``tests/sync_protocol/test_purity.py`` holds us to it). Modules:

* ``identifiers`` -- site ids, table names, segment ids that cannot exist in a bad form
* ``manifest``    -- the segment manifest and its tus ``Upload-Metadata`` encoding
* ``tus``         -- tus 1.0.0 header names, strict parsing, what ``OPTIONS`` advertises
* ``receiver``    -- the hub's upload state machine (``RECEIVER_TRANSITIONS``)
* ``sender``      -- the edge's upload state machine (``SENDER_TRANSITIONS``)
* ``segment_states`` -- a segment's life on the edge (``SEGMENT_TRANSITIONS``)
* ``merge_states`` -- a committed segment's life at the hub and its merge batch (``MERGE_TRANSITIONS``,
  ``BATCH_TRANSITIONS``)
* ``chain``       -- hash-chain watermark and gaps per (site, table)
* ``segment_contents`` -- what a segment file must hold for its manifest to be true; the schema fingerprint
* ``chunking``    -- chunk size adapted to the measured link
* ``errors``      -- the shared error vocabulary; ``limits`` -- every limit with its reason
* ``table_types`` -- what a table may hold and how a column widens; ``table_values`` -- values into those
  types, checked; ``text_types`` -- dates and timestamps in CSV and JSON Lines text (pyarrow, no I/O)
"""

from .errors import (
    ErrorBody,
    ErrorCode,
    LocalProtocolError,
    PeerAction,
    RemoteProtocolError,
    decode_error_body,
    encode_error_body,
)
from .identifiers import SegmentId, SiteId, TableName
from .manifest import Manifest, schema_fingerprint, sha256_hex

__all__ = [
    "ErrorBody",
    "ErrorCode",
    "LocalProtocolError",
    "Manifest",
    "PeerAction",
    "RemoteProtocolError",
    "SegmentId",
    "SiteId",
    "TableName",
    "decode_error_body",
    "encode_error_body",
    "schema_fingerprint",
    "sha256_hex",
]
