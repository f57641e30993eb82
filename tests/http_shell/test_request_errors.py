"""A body that is not what its headers say is a 400 on both real servers (``http_shell.request_errors``)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from .fuzzer import exchange

pytestmark = pytest.mark.integration


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_body_that_is_not_its_content_encoding_is_400_without_a_traceback(hub_and_edge, encoding):
    """Found by fuzzing: ``Content-Encoding: gzip`` on bytes that are not gzip was a 500 from the hub's report and
    login routes and the edge's writes, each with a traceback in the log."""
    body = b'{"backlog_bytes": 1}'
    for url, path, media, token in (
        (hub_and_edge.hub_url, "/v1/sync/sites/ship-1/report", "application/json", hub_and_edge.site_token),
        (hub_and_edge.hub_url, "/login", "application/x-www-form-urlencoded", ""),
        (hub_and_edge.edge_url, "/v1/tables/events", "application/x-ndjson", ""),
    ):
        method = "PUT" if "report" in path else "POST"
        request = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {media}\r\n"
                   f"Content-Encoding: {encoding}\r\nAuthorization: Bearer {token}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        answer = exchange(urlsplit(url).port, request, damaged=False)
        assert answer[:12] in (b"HTTP/1.1 400", b"HTTP/1.0 400"), (path, answer[:300])  # 1.0: aiohttp's own
    for log in (hub_and_edge.hub_log, hub_and_edge.edge_log):
        assert "Traceback" not in log.read_text()
