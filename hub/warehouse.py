"""The warehouse: where the merged Delta tables live, a directory or an ``s3://bucket/prefix``.

A lone hub keeps its tables in ``DATA/tables``; the processes of a cluster share one warehouse
(``--warehouse``): a directory they all mount, or an S3 (or S3-compatible) prefix. For S3, delta-rs
commits a table version with a conditional write (``PUT`` with ``If-None-Match: *``), so two writers can
never both create the same version: the loser gets a commit conflict and nothing is overwritten. That is
what makes a shared prefix safe without a DynamoDB lock table; the store must honour conditional writes
(AWS S3 since 2024, MinIO, R2, and the moto server the tests use: docs/scale-out.md says what was proven).

Credentials and the endpoint come from the usual ``AWS_*`` environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, and ``AWS_ALLOW_HTTP=true`` for a plain-HTTP
endpoint on a private network), which delta-rs and pyarrow both read; nothing here handles a secret, so
none can reach a log.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sync_protocol.identifiers import TABLE_NAME_PATTERN

S3_SCHEME = "s3://"

BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
"""S3's bucket naming rule (3-63 of lowercase letters, digits, dots and hyphens)."""

DELTA_LOG = "_delta_log"


class WarehouseUnavailable(Exception):
    """The warehouse cannot be reached or is not there; the message says which and what to check."""


def parse_warehouse(value: Path | str) -> Path | str:
    """``--warehouse`` as given: an ``s3://bucket[/prefix]`` URL (kept as text, without a trailing slash) or a
    directory (resolved). Other schemes are refused with what is taken instead."""
    text = str(value)
    if text.startswith(S3_SCHEME):
        bucket, _, prefix = text[len(S3_SCHEME):].partition("/")
        prefix = prefix.rstrip("/")
        if not BUCKET_PATTERN.fullmatch(bucket):
            raise ValueError(f"--warehouse {text!r}: {bucket!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise ValueError(f"--warehouse {text!r}: the prefix has an empty, '.' or '..' part")
        return S3_SCHEME + bucket + (f"/{prefix}" if prefix else "")
    if "://" in text:
        raise ValueError(f"--warehouse takes a directory or an s3://BUCKET/PREFIX URL, not {text.split('://')[0]}://"
                         " (docs/scale-out.md)")
    return Path(text).resolve()


def is_remote(warehouse: Path | str) -> bool:
    return isinstance(warehouse, str)


def table_uri(warehouse: Path | str, table: str) -> str:
    """What delta-rs opens for ``table``: a local path or ``s3://bucket/prefix/table``."""
    return f"{warehouse}/{table}" if is_remote(warehouse) else str(Path(warehouse) / table)


def list_tables(warehouse: Path | str) -> dict[str, str]:
    """Every Delta table in the warehouse, by name (directories named like a table, holding a Delta log)."""
    if not is_remote(warehouse):
        root = Path(warehouse)
        if not root.is_dir():
            return {}
        return {path.name: str(path) for path in sorted(root.iterdir())
                if TABLE_NAME_PATTERN.fullmatch(path.name) and (path / DELTA_LOG).is_dir()}
    import pyarrow.fs as pafs

    filesystem, base = _filesystem(warehouse)
    found = {}
    for info in filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
        is_table = (info.type == pafs.FileType.Directory and TABLE_NAME_PATTERN.fullmatch(info.base_name)
                    and filesystem.get_file_info(f"{info.path}/{DELTA_LOG}").type != pafs.FileType.NotFound)
        if is_table:
            found[info.base_name] = table_uri(warehouse, info.base_name)
    return found


def check_reachable(warehouse: Path | str) -> None:
    """Fail early, with what to check, when an S3 warehouse's bucket cannot be reached (a hub that started
    anyway would take uploads it could never merge). A directory is made by ``HubLayout.made``."""
    if not is_remote(warehouse):
        return
    import pyarrow.fs as pafs

    bucket = warehouse[len(S3_SCHEME):].split("/")[0]
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "AWS's own endpoint")
    try:
        filesystem, _ = _filesystem(warehouse)
        found = filesystem.get_file_info(bucket).type
    except OSError as error:
        raise WarehouseUnavailable(
            f"cannot reach the warehouse {warehouse} at {endpoint}: {str(error).splitlines()[0][:200]}. Check "
            "AWS_ENDPOINT_URL, AWS_REGION and the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment"
        ) from None
    if found == pafs.FileType.NotFound:
        raise WarehouseUnavailable(f"the warehouse's bucket {bucket!r} does not exist at {endpoint}: create it (the hub"
                                   " does not create buckets) or check --warehouse and AWS_ENDPOINT_URL")


def _filesystem(warehouse: str):
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(warehouse)
