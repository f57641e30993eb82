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
