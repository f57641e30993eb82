"""Every limit of the sync protocol, once, with the reason it has the value it has.

Node-local limits (disk quota, retention, seal size and age) live in each node's config;
the ones here are those both peers must agree on.
"""

TUS_VERSION = "1.0.0"
"""The only tus protocol version spoken. tus 1.0.0 has been stable since 2016; every client speaks it."""

TUS_EXTENSIONS = ("creation", "checksum", "termination", "expiration")
"""Advertised in ``Tus-Extension``. No ``concatenation``: a segment is small enough to go as one upload,
and one upload per segment is what makes the exactly-once commit a single step."""

CHECKSUM_ALGORITHMS = ("sha1", "sha256")
"""Advertised in ``Tus-Checksum-Algorithm``. sha1 because every tus client implements it; sha256 because
it is what the whole-segment digest uses, so a client can hash once with one algorithm."""

MAX_SEGMENT_BYTES = 512 * 1024 * 1024
"""Largest segment the hub accepts (``Tus-Max-Size``). Edges seal at 64 MiB by default; 512 MiB leaves
room for a hand-made upload while keeping a staging file small next to the hub's disk."""

MIN_CHUNK_BYTES = 4 * 1024
"""Smallest chunk the sender shrinks to. A satellite link that drops every few tens of kilobytes must still
make progress; below 4 KiB the per-request overhead (~400 bytes of headers) exceeds 10%."""

DEFAULT_CHUNK_BYTES = 256 * 1024
"""First chunk size before the link is measured: about 1 s at 2 Mbit/s, so a cut early on costs little."""

MAX_CHUNK_BYTES = 16 * 1024 * 1024
"""Largest chunk Harbour's own sender puts in one PATCH (the ``ChunkSizer``'s ceiling). Large enough to fill a
100 Mbit/s port link with a few requests per second; small enough that the sender's sizing reacts within
~1.3 s. It binds only the sender: the hub takes a PATCH of any length up to the upload's remaining bytes, as
tus 1.0.0 has it (tus-js-client and tuspy send a whole file in one PATCH by default)."""

DURABLE_SLICE_BYTES = 4 * 1024 * 1024
"""Within one PATCH the hub fsyncs the staging file and persists the new durable offset every this many bytes,
so a long body that is cut, or a hub killed while reading it, keeps what was made durable: a hub crash costs
at most one slice (0.3 s at 100 Mbit/s; a 64 MiB body has 16 of them). Smaller slices cost an fsync plus a
ledger commit (a few ms) each; Harbour's sender sizes chunks to ~2 s of the link, so at sea a slice is more
than a chunk and this only matters for the long PATCHes of plain tus clients."""

CHUNK_TARGET_SECONDS = 2.0
"""The sender sizes chunks to take about this long on the measured link: long enough that request overhead
and one round trip (600 ms at sea) stay small next to it, short enough that a cut costs little."""

MAX_METADATA_BYTES = 4 * 1024
"""Largest ``Upload-Metadata`` header. A manifest encodes to ~500 bytes; aiohttp's own header limit is 8 KiB."""

MAX_METADATA_VALUE_BYTES = 256
"""Largest decoded value of one metadata pair; the longest real one is a 64-hex-digit digest."""

MAX_SEQ = 2**63 - 1
"""Segment sequence numbers are signed 64-bit on both ledgers (SQLite INTEGER, PostgreSQL bigint)."""

MAX_ROWS_PER_SEGMENT = 2**40
"""A sanity bound on a manifest's row count; any real segment is far below it."""

MAX_PRIORITY_CLASS = 9
"""Priority classes are 0 (highest: alarms) to 9 (lowest: bulk). Ten levels is more than any fleet uses."""

UPLOAD_EXPIRY_SECONDS = 7 * 24 * 3600
"""An unfinished upload is kept a week after its last chunk: a ship between ports may be silent that long,
and a resumed upload is cheaper than a restarted one on a thin link."""

MAX_COLUMNS = 1024
"""Widest table, at the edge (a write, and the union of a table's columns) and at the hub (a segment, besides its
``_site`` lineage column). Parquet and DuckDB cope with more, but thousands of columns are almost always a JSON
document mistaken for a row; each column costs per-segment metadata on a thin link, and a 10,000-column segment
took minutes to merge, and every later merge of its table as long."""

MAX_SEGMENT_ROWS = 16 * 1024 * 1024
"""Most rows in one segment. The edge seals a table's log at this many rows, whatever its size, and refuses a
single write with more; the hub refuses (413) a segment whose Parquet footer says more, before it is committed.
The merger reads a segment whole: a 74 KB file of 20 million constant rows took 2.2 GB of the hub's memory."""

MAX_SEGMENT_DECODED_BYTES = 1024**3
"""Most bytes one segment's rows may take once decoded (Arrow), as the hub works it out from the Parquet footer and
the dictionaries before committing (``hub.segment_size``). The merger reads a segment whole and works on a few
copies of it; Parquet bounds none of that: a 220 KB file held 2 GB of one repeated string. The edge seals a log at
64 MiB of Arrow (``edge_node.config.DEFAULT_SEAL_BYTES``), so its segments decode to about that plus one write;
1 GiB leaves sixteen times that, and is four merge batches' worth (``hub.merger.MAX_BATCH_ROWS``)."""

MAX_OPEN_UPLOADS_PER_SITE = 256
"""Unfinished, unexpired uploads one site may hold at the hub. An edge sends at most 64 at once
(``edge_node.config.DEFAULT_MAX_IN_FLIGHT``) and resumes each by its key, so 256 leaves room for parked segments;
a site past it is creating uploads it never finishes (a broken or hostile client) and gets 429 until some
finish or expire, while every other site goes on."""

MAX_ANNOUNCED_BYTES_PER_SITE = 64 * 1024**3
"""Bytes one site's unfinished uploads may announce (Upload-Length) in all: 64 full-size segments at once, twice
what 64 uploads of a ship's usual segments need. Past it, creation answers 507 (retry later), so one site cannot
promise the hub's staging disk away."""

MAX_SEGMENT_DIGEST_FAILURES = 3
"""Whole-segment digest failures before the sender parks a segment. Chunks are checksummed, so a repeated
whole-file mismatch means the file on the ship's disk no longer matches its manifest: retrying cannot help."""

PERMANENT_ANSWERS_BEFORE_PARKING = 3
"""Permanent-looking answers (401, 403, 400, 409 conflict...) in a row, with back-off between them, before
the sender parks a segment. A link that corrupts bytes can damage a token or a header and draw one such
answer by chance (seen in the demo scenario over plain HTTP); three in a row are not chance. Costs a
genuinely refused segment two extra small requests."""

MALFORMED_ANSWERS_BEFORE_PARKING = 8
"""The same rule for answers that say the *request* was malformed (``PeerAction.FIX_REQUEST``: a bad header, no
API at this path, a missing Tus-Resumable) or carry no Harbour code at all (the hub's HTTP parser answers a plain
400 to a request line with a flipped byte). The edge only sends well-formed requests, so such an answer means
the link damaged it -- or a bug, which repeats. A link that corrupts one request in three drew three in a row
often enough to park a ship's alarms until someone ran ``harbour edge release`` (found following the README
through the ``stormy`` voyage); eight in a row, with back-off between them (half a minute at least), are not chance."""

MAX_ERROR_BODY_BYTES = 64 * 1024
"""How much of a peer's error body is read. Error bodies are small; a larger one is garbage or hostile."""

GENESIS_DIGEST = "0" * 64
"""``prev-sha256`` of the first segment of a (site, table): the start of its hash chain."""

FIRST_SEQ = 1
"""Sequence numbers start at 1 so that 0 can mean "nothing committed yet" in watermarks."""
