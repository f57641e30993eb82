"""``Expect`` on both real servers (``http_shell.routes``)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from .fuzzer import exchange

pytestmark = pytest.mark.integration


@pytest.mark.guarantee("G6")
def test_expect_100_continue_gets_a_100_and_then_the_answer_on_both_servers(hub_and_edge):
    """Found by fuzzing: both servers answered every ``Expect: 100-continue`` (curl sends it with any body over
    1 MiB) with a 500: they compared the version with an attribute ``aiohttp.web`` does not have."""
    body = b'{"id": 1}\n'
    for url, request in (
        (hub_and_edge.edge_url, b"POST /v1/tables/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                b"Content-Type: application/x-ndjson\r\nExpect: 100-continue\r\n"
                                b"Content-Length: %d\r\n\r\n" % len(body) + body),
        (hub_and_edge.hub_url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\n"
                               b"\r\n"),
    ):
        answer = exchange(urlsplit(url).port, request, damaged=False)
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "), answer[:300]
    for log in (hub_and_edge.hub_log, hub_and_edge.edge_log):
        assert "Traceback" not in log.read_text()
