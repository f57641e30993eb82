"""Start-up recovery of a real hub killed with SIGKILL at every step that matters (G2, G3).

Each test kills the hub at one point -- from outside while a chunk is in flight, or from inside at a
named crash point (``HARBOUR_HUB_CRASH_AT``, see ``hub/faults.py``) -- restarts it on the same DIR,
finishes the upload, and checks that the merged table holds every row exactly once (count and distinct
row ids) and that the ledger's rows-merged agrees with the table.
"""

from __future__ import annotations

import socket
import time

import pytest

from sync_protocol.tus import UPLOADS_PATH

from .conftest import Hub, assert_exactly_once, chain, harbour, make_segment, rows_table

pytestmark = pytest.mark.integration


def wait_dead(hub: Hub) -> None:
    assert hub.wait_exit(30) == -9, hub.log()[-2000:]


@pytest.mark.guarantee("G3")
def test_sigkill_while_a_chunk_is_in_flight_resumes_at_the_durable_offset(hub_factory):
    hub = hub_factory()
    token = hub.add_site("ship-a")
    hub.start()
    segment = make_segment("ship-a", "telemetry", 1, rows_table(0, 20000))
    hub.create(token, segment)
    first = hub.patch(token, segment.key, 0, segment.data[:3000])
    assert first.offset == 3000
    # A second chunk is half sent when the hub dies.
    sock = socket.create_connection(("127.0.0.1", hub.port))
    head = (f"PATCH {UPLOADS_PATH}/{segment.key} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: 3000\r\nContent-Length: 5000\r\n\r\n").encode()
    sock.sendall(head + segment.data[3000:5500])
    time.sleep(0.3)
    hub.kill()
    sock.close()
    hub.start()
    assert hub.head(token, segment.key).offset == 3000
    assert hub.patch(token, segment.key, 3000, segment.data[3000:]).committed
    assert_exactly_once(hub, "telemetry", 20000)


@pytest.mark.guarantee("G2", "G3")
@pytest.mark.parametrize("point", ["after-chunk-fsync", "before-ledger-commit", "after-ledger-commit"])
def test_crash_during_upload_and_commit(hub_factory, point):
    hub = hub_factory()
    token = hub.add_site("ship-a")
    segments = chain("ship-a", "telemetry", 2, rows_per=100)
    hub.start()
    hub.upload(token, segments[0])
    hub.stop()
    hub.start(crash_at=point)
    second = segments[1]
    hub.create(token, second)
    with pytest.raises(OSError):  # the hub dies before answering
        hub.patch(token, second.key, 0, second.data)
    wait_dead(hub)
    hub.start()
    probe = hub.head(token, second.key)
    if point == "after-chunk-fsync":
        assert probe.offset == 0 and not probe.committed  # the offset was never persisted
        assert hub.patch(token, second.key, 0, second.data).committed
    else:
        # Every byte was durable: the restarted hub verified (and committed) it on start.
        assert probe.committed and probe.offset == len(second.data)
        assert hub.create(token, second).committed
    assert_exactly_once(hub, "telemetry", 200)


@pytest.mark.guarantee("G2")
@pytest.mark.parametrize("point", ["before-delta-commit", "after-delta-commit"])
def test_crash_during_merge_merges_each_row_once(hub_factory, point):
    hub = hub_factory()
    tokens = {s: hub.add_site(s) for s in ("ship-a", "ship-b")}
    hub.start()
    hub.upload(tokens["ship-a"], chain("ship-a", "telemetry", 1, rows_per=50)[0])
    assert_exactly_once(hub, "telemetry", 50)
    hub.stop()
    hub.start(crash_at=point)
    # These commits are acknowledged; then the merger dies at the crash point.
    later_a = chain("ship-a", "telemetry", 3, rows_per=50)[1:]
    for segment in later_a:
        try:
            hub.upload(tokens["ship-a"], segment)
        except OSError:
            break
    wait_dead(hub)
    hub.start()
    for segment in later_a:  # whatever was not acknowledged yet is resent, as an edge would
        if not hub.head(tokens["ship-a"], segment.key).committed:
            hub.upload(tokens["ship-a"], segment)
    hub.upload(tokens["ship-b"], make_segment("ship-b", "telemetry", 1, rows_table(0, 7)))
    hub.wait_merged(157, "telemetry")
    got = hub.query("SELECT _site, count(*) AS n, count(DISTINCT row_id) AS d FROM telemetry "
                    "GROUP BY _site ORDER BY _site")
    assert got == [{"_site": "ship-a", "n": 150, "d": 150}, {"_site": "ship-b", "n": 7, "d": 7}]
    assert "merge batches settled" in hub.log()
    assert_exactly_once(hub, "telemetry", 157)  # also: the ledger agrees with the table


def test_second_hub_on_the_same_data_dir_is_refused(hub_factory):
    hub = hub_factory().start()
    other = Hub(hub.data, hub.port + 1 if hub.port < 65000 else hub.port - 1, hub.log_path.with_suffix(".2"))
    result = harbour("hub", "run", "--data", str(other.data), "--listen", f"127.0.0.1:{other.port}", check=False)
    assert result.returncode == 1
    assert "another `harbour hub run` is using" in result.stderr


def test_sigterm_stops_cleanly(hub_factory):
    hub = hub_factory().start()
    hub.stop()
    assert hub.process.returncode == 0
    assert "stopping" in hub.log()


@pytest.mark.guarantee("G7")
def test_300_slow_clients_are_cut_at_the_header_deadline_while_uploads_go_on(hub, slow_clients):
    """300 connections sending one header byte a second were held 90 s and starved healthy clients (issue 16)."""
    from hub.http_shell.slow_clients import HEADER_TIMEOUT_SECONDS

    token = hub.add_site("ship-1")
    segments = iter(chain("ship-1", "telemetry", 200, rows_per=5))
    uploaded = []

    def healthy_client() -> None:
        assert hub.request("GET", "/healthz", timeout=5).status == 200
        segment = next(segments)
        assert hub.upload(token, segment).committed
        uploaded.append(segment)

    result = slow_clients.attack(hub.port, healthy_client, sockets=300, seconds=HEADER_TIMEOUT_SECONDS + 10)
    assert all(after is not None and after < HEADER_TIMEOUT_SECONDS + 3 for after in result.closed_after), \
        sorted(result.closed_after, key=lambda a: a or 1e9)[-5:]
    assert sum(answer.startswith(b"HTTP/1.1 408") and b"header-timeout" in answer for answer in result.answers) \
        >= 290, result.answers[:3]
    assert len(result.probe_seconds) >= 10 and max(result.probe_seconds) < 2.0, result.probe_seconds
    print(f"healthy: {len(result.probe_seconds)} probes, max {max(result.probe_seconds):.3f} s; slow closed after "
          f"{min(result.closed_after):.1f}-{max(result.closed_after):.1f} s")
    log = hub.log()
    assert len(log) < 20_000 and "Traceback" not in log, log[-2000:]
    hub.wait_merged(5 * len(uploaded), "telemetry")
