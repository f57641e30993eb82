"""Identifiers that cannot exist in a bad form: site ids, table names, segment ids.

A value of these types has been validated when it was made, so code that holds one never checks
again. Bad input from a peer raises ``RemoteProtocolError`` (code ``bad-identifier``) with a
message that quotes the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ErrorCode, RemoteProtocolError
from .limits import FIRST_SEQ, MAX_SEQ

SITE_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
"""DNS-label-like: usable in URLs, file names and as a PostgreSQL identifier without quoting."""

TABLE_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")
"""A SQL identifier that needs no quoting in DuckDB, SQLite or PostgreSQL (63 is PostgreSQL's limit)."""

RESERVED_TABLE_PREFIXES = ("sqlite_", "pg_", "duckdb_")
"""Names the SQL engines keep for themselves; a table called so could not be queried."""


def _reject(kind: str, value: object, rule: str) -> RemoteProtocolError:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return RemoteProtocolError(
        f"{kind} {shown} is not valid: {rule}", code=ErrorCode.BAD_IDENTIFIER, op="validating", subject=kind,
    )


@dataclass(frozen=True, order=True)
class SiteId:
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not SITE_ID_PATTERN.fullmatch(self.value):
            raise _reject(
                "site id", self.value,
                "use 1-63 of a-z, 0-9 and '-', starting with a letter or digit",
            )

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, order=True)
class TableName:
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not TABLE_NAME_PATTERN.fullmatch(self.value):
            raise _reject(
                "table name", self.value,
                "use 1-63 of a-z, 0-9 and '_', starting with a letter",
            )
        if self.value.startswith(RESERVED_TABLE_PREFIXES):
            raise _reject("table name", self.value, f"names starting with {RESERVED_TABLE_PREFIXES} are reserved")

    def __str__(self) -> str:
        return self.value


def parse_seq(text: object) -> int:
    """A segment sequence number from the wire: decimal digits only, no sign, no spaces."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 19:
        value = int(text)
    else:
        raise _reject("seq", text, f"use a decimal integer from {FIRST_SEQ} to {MAX_SEQ}")
    if not FIRST_SEQ <= value <= MAX_SEQ:
        raise _reject("seq", text, f"use a decimal integer from {FIRST_SEQ} to {MAX_SEQ}")
    return value


@dataclass(frozen=True, order=True)
class SegmentId:
    """One segment of one table of one site. Ordered by (site, table, seq)."""

    site: SiteId
    table: TableName
    seq: int

    def __post_init__(self) -> None:
        if not isinstance(self.site, SiteId) or not isinstance(self.table, TableName):
            raise TypeError("SegmentId needs a SiteId and a TableName; use SegmentId.parse for strings")
        parse_seq(self.seq)

    @classmethod
    def of(cls, site: str, table: str, seq: int | str) -> SegmentId:
        return cls(SiteId(site), TableName(table), parse_seq(seq))

    @property
    def upload_key(self) -> str:
        """The deterministic last path component of this segment's tus upload URL.

        ``.`` cannot occur in a site id or table name, so the key splits back unambiguously."""
        return f"{self.site}.{self.table}.{self.seq}"

    @classmethod
    def from_upload_key(cls, key: str) -> SegmentId:
        parts = key.split(".") if isinstance(key, str) else []
        if len(parts) != 3:
            raise _reject("upload key", key, "expected SITE.TABLE.SEQ")
        return cls.of(*parts)

    def previous(self) -> SegmentId | None:
        return None if self.seq == FIRST_SEQ else SegmentId(self.site, self.table, self.seq - 1)

    def __str__(self) -> str:
        return f"{self.site}/{self.table}/{self.seq}"
