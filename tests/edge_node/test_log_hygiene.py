"""A real edge fed damaged requests quoting a token: 400 answers, no token in its log, no log flood, still up."""

from __future__ import annotations

import urllib.request

import pytest


@pytest.mark.guarantee("G5", "G6")
def test_damaged_authorization_lines_never_reach_the_log(tmp_path, start_edge, damaged_requests):
    edge = start_edge(tmp_path / "ship")
    port = int(edge.url.rsplit(":", 1)[1])
    answers = damaged_requests.send(port, times=40)
    assert answers and all(line.split()[1] == "400" for line in answers), answers[:3]
    with urllib.request.urlopen(edge.url + "/healthz", timeout=10) as answer:
        assert answer.status == 200
    log = edge.stderr()
    assert damaged_requests.token not in log and damaged_requests.token[:12] not in log
    malformed = [line for line in log.splitlines() if "malformed request" in line]
    assert 1 <= len(malformed) <= 3 and "Traceback" not in log, log[-3000:]


@pytest.mark.guarantee("G6")
def test_a_non_ascii_expect_header_is_417_not_500(tmp_path, start_edge):
    import socket

    edge = start_edge(tmp_path / "ship")
    port = int(edge.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"POST /v1/tables/t HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nExpect: 1\xff\r\n\r\n")
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 417") and b"100-continue" in answer
    with urllib.request.urlopen(edge.url + "/healthz", timeout=10) as healthy:
        assert healthy.status == 200
