"""A real hub fed damaged requests quoting a token: 400 answers, no token in its log, no log flood, still up."""

from __future__ import annotations

import pytest


@pytest.mark.guarantee("G5", "G6")
def test_damaged_authorization_lines_never_reach_the_log(hub, damaged_requests):
    answers = damaged_requests.send(hub.port, times=40)
    assert answers and all(line.split()[1] == "400" for line in answers), answers[:3]
    assert hub.request("GET", "/healthz").status == 200
    log = hub.log()
    assert damaged_requests.token not in log and damaged_requests.token[:12] not in log
    malformed = [line for line in log.splitlines() if "malformed request" in line]
    # 120 damaged requests of three kinds: one line per kind (a minute apart at most), no tracebacks
    assert 1 <= len(malformed) <= 3 and "Traceback" not in log, log[-3000:]
