"""Python client for the edge ingest API, for on-board applications.

    from edge_node.client import EdgeClient
    EdgeClient("http://127.0.0.1:8701").write("telemetry", pyarrow_table_or_batch)
    prices = EdgeClient("http://127.0.0.1:8701").dataset("offers")   # reference data from head office
    prices.table, prices.version

``write`` returns once the edge has the rows durably (its 200). A refusal raises ``EdgeWriteError``
carrying the server's status, message, code and hint; a connection failure raises ``EdgeUnavailable``
(the write may or may not be stored: resend it only if the rows carry their own ids, see the contract).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import aiohttp
import pyarrow as pa
import pyarrow.ipc as pa_ipc

from sync_protocol import decode_error_body

from .codecs import ARROW_STREAM, encode_arrow_stream

DEFAULT_TIMEOUT_SECONDS = 60.0
"""A durable write of a maximum-size body takes well under a second here; a minute covers a slow eMMC."""


class EdgeClientError(Exception):
    pass


class EdgeUnavailable(EdgeClientError):
    """The edge did not answer (not running, or it crashed mid-request): the write may or may not be stored."""


class EdgeWriteError(EdgeClientError):
    """The edge refused the write; nothing of it was stored."""

    def __init__(self, status: int, body: bytes) -> None:
        decoded = decode_error_body(status, body)
        self.status = status
        self.message = decoded.message
        self.code = decoded.code
        self.hint = decoded.hint
        shown = decoded.message if not decoded.hint or decoded.hint in decoded.message else (
            f"{decoded.message} -- {decoded.hint}")  # the edge's message may carry its hint already
        super().__init__(f"HTTP {status}: {shown}")


class DatasetNotFound(EdgeClientError):
    """The ship holds no such reference dataset (not published for it, or not arrived yet)."""


@dataclass(frozen=True)
class Dataset:
    """One version of a reference dataset, whole: every row belongs to ``version``."""

    name: str
    version: int
    table: pa.Table


def _checked_url(url: str) -> str:
    """A usage error now, not ``EdgeUnavailable`` ("unknown url type") at the first write."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"the edge node's URL must start with http:// or https://, e.g. http://127.0.0.1:8701 "
                         f"(got {url!r})")
    return url


def _request_parts(base_url: str, table: str, data: pa.Table | pa.RecordBatch) -> tuple[str, bytes]:
    if not isinstance(data, pa.Table | pa.RecordBatch):
        raise TypeError(f"write() takes a pyarrow Table or RecordBatch, not {type(data).__name__}")
    return f"{base_url.rstrip('/')}/v1/tables/{table}", encode_arrow_stream(data)


def _rows(body: bytes) -> int:
    return int(json.loads(body)["rows"])


class EdgeClient:
    """Blocking client (standard library HTTP, so it works in any thread without an event loop)."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.url = _checked_url(url)
        self.timeout = timeout

    def write(self, table: str, data: pa.Table | pa.RecordBatch) -> int:
        url, body = _request_parts(self.url, table, data)
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ARROW_STREAM})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _rows(response.read())
        except urllib.error.HTTPError as error:
            raise EdgeWriteError(error.code, error.read()) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise EdgeUnavailable(f"edge node at {self.url} did not answer: {error}") from error

    def status(self) -> dict:
        try:
            with urllib.request.urlopen(f"{self.url.rstrip('/')}/v1/status", timeout=self.timeout) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise EdgeUnavailable(f"edge node at {self.url} did not answer: {error}") from error


    def dataset(self, name: str) -> Dataset:
        """The current version of reference dataset ``name`` (``GET /v1/datasets/{name}``)."""
        url = f"{self.url.rstrip('/')}/v1/datasets/{urllib.parse.quote(name, safe='')}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                version = int(response.headers["Harbour-Dataset-Version"])
                table = pa_ipc.open_stream(response.read()).read_all()
        except urllib.error.HTTPError as error:
            body = error.read()
            if error.code == 404:
                raise DatasetNotFound(decode_error_body(404, body).message) from None
            raise EdgeClientError(f"HTTP {error.code}: {decode_error_body(error.code, body).message}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise EdgeUnavailable(f"edge node at {self.url} did not answer: {error}") from error
        return Dataset(name, version, table)


class AsyncEdgeClient:
    """The asyncio twin of EdgeClient; use as ``async with AsyncEdgeClient(url) as client``."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.url = _checked_url(url)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncEdgeClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def write(self, table: str, data: pa.Table | pa.RecordBatch) -> int:
        if self._session is None:
            raise RuntimeError("use 'async with AsyncEdgeClient(url) as client:' before write()")
        url, body = _request_parts(self.url, table, data)
        try:
            async with self._session.post(url, data=body, headers={"Content-Type": ARROW_STREAM}) as response:
                payload = await response.read()
                if response.status != 200:
                    raise EdgeWriteError(response.status, payload)
                return _rows(payload)
        except (aiohttp.ClientConnectionError, TimeoutError) as error:
            raise EdgeUnavailable(f"edge node at {self.url} did not answer: {error}") from error
