"""`harbour edge release`: parked segments back in the queue, by the ledger's one writer -- the command
itself when no node runs (under the data directory's lock), the running node when there is one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest

from edge_node.dir_lock import DataDirLock, LockHolder, read_holder, this_host
from edge_node.ledger import SegmentLedger
from edge_node.release import (
    RELEASE_PATH,
    TOKEN_HEADER,
    NotParked,
    ReleaseError,
    node_url,
    parse_request_body,
    release,
    release_parked,
    request_body,
    segment_from_text,
)
from sync_protocol import Manifest, RemoteProtocolError, SegmentId, SiteId
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.manifest import sha256_hex

REPO = Path(__file__).resolve().parents[2]
SITE = "ship-9"


def parked_ledger(data_dir: Path, seqs: range, reason: str = "HTTP 409 chain conflict") -> None:
    """A ledger holding segments ``seqs`` of table ``events``, each parked by the hub with ``reason``."""
    ledger = SegmentLedger(data_dir, SiteId(SITE), clock=time.time)
    ledger.claim_site()
    previous = GENESIS_DIGEST
    for seq in seqs:
        digest = sha256_hex(f"segment {seq}".encode())
        manifest = Manifest(SegmentId.of(SITE, "events", seq), 1, 10, digest, sha256_hex(b"s"), previous, 5, 0)
        ledger.record_sealed(manifest, f"events-{seq}.parquet", seq, pa.schema([("v", pa.int64())]))
        ledger.mark_uploading(manifest.segment)
        ledger.mark_parked(manifest.segment, reason)
        previous = digest
    ledger.close()


def parked_now(data_dir: Path) -> list[str]:
    ledger = SegmentLedger(data_dir, None, clock=time.time)
    try:
        return [str(segment) for segment, _ in ledger.parked()]
    finally:
        ledger.close()


def segment(seq: int) -> SegmentId:
    return SegmentId.of(SITE, "events", seq)


def me(command: str = "harbour edge release", **changes) -> LockHolder:
    return LockHolder(**{"pid": os.getpid(), "host": this_host(), "started": time.time(), "command": command,
                         **changes})


def open_ledger(data_dir: Path) -> SegmentLedger:
    return SegmentLedger(data_dir, None, time.time)


# -- the ledger step, shared by both ways ---------------------------------------------------------


def test_release_parked_is_all_or_nothing(tmp_path):
    parked_ledger(tmp_path, range(1, 4))
    ledger = open_ledger(tmp_path)
    try:
        with pytest.raises(NotParked, match="ship-9/events/7 is not parked"):
            release_parked(ledger, [segment(1), segment(7)])
        assert len(ledger.parked()) == 3
        released = release_parked(ledger, [segment(2), segment(2)])
        assert released == [(segment(2), "HTTP 409 chain conflict")]
        assert [s for s, _ in release_parked(ledger, None)] == [segment(1), segment(3)]
        assert release_parked(ledger, None) == []
    finally:
        ledger.close()


def test_request_bodies_round_trip_and_bad_ones_are_refused():
    assert parse_request_body(request_body(None)) is None
    assert parse_request_body(request_body([segment(1), segment(2)])) == [segment(1), segment(2)]
    for bad in (None, [], {}, {"all": "yes"}, {"all": True, "segments": []}, {"segments": "ship-9/events/1"},
                {"segments": ["ship-9/events"]}, {"segments": [7]}, {"segments": ["Ship/events/1"]}):
        with pytest.raises(RemoteProtocolError):
            parse_request_body(bad)


def test_segment_names_are_site_table_seq():
    assert segment_from_text("ship-9/events/12") == segment(12)
    for bad in ("ship-9/events", "ship-9/events/1/2", "ship-9/events/x", "", None):
        with pytest.raises(RemoteProtocolError):
            segment_from_text(bad)


@pytest.mark.parametrize(("listen", "url"), [
    ("127.0.0.1:8701", "http://127.0.0.1:8701"), ("0.0.0.0:8701", "http://127.0.0.1:8701"),
    ("10.1.2.3:9", "http://10.1.2.3:9"), ("[::]:8701", "http://[::1]:8701"), ("[::1]:8701", "http://[::1]:8701"),
])
def test_the_node_is_reached_where_it_listens(listen, url):
    assert node_url(listen) == url


# -- which way release goes -------------------------------------------------------------------------


def test_without_a_node_release_changes_the_ledger_under_the_lock(tmp_path):
    parked_ledger(tmp_path, range(1, 3))
    seen: list[LockHolder | None] = []

    def watching(data_dir: Path) -> SegmentLedger:
        seen.append(read_holder(data_dir))
        return open_ledger(data_dir)

    assert release(tmp_path, [segment(2)], me(), watching) == [("ship-9/events/2", "HTTP 409 chain conflict")]
    assert [(h.command, h.pid) for h in seen] == [("harbour edge release", os.getpid())]  # held while it wrote
    assert parked_now(tmp_path) == ["ship-9/events/1"]
    with DataDirLock.acquire(tmp_path):  # and let go
        pass


@pytest.mark.parametrize("holder", [
    me(),  # another release
    me("harbour edge run"),  # a node still starting: no address yet
    me("harbour edge run", listen="127.0.0.1:9", token="t", host="another-host"),  # its 127.0.0.1 is not ours
])
def test_a_holder_that_cannot_be_asked_means_nothing_is_released(tmp_path, holder):
    parked_ledger(tmp_path, range(1, 2))
    with DataDirLock.acquire(tmp_path) as lock:
        lock.record(holder)
        with pytest.raises(ReleaseError) as refused:
            release(tmp_path, None, me(), open_ledger)
    assert f"pid {holder.pid} on {holder.host}" in str(refused.value) and "nothing was released" in str(refused.value)
    assert parked_now(tmp_path) == ["ship-9/events/1"]


def test_a_node_that_does_not_answer_means_nothing_is_released(tmp_path):
    parked_ledger(tmp_path, range(1, 2))
    with DataDirLock.acquire(tmp_path) as lock:
        lock.record(me("harbour edge run", listen="127.0.0.1:9", token="t"))  # port 9: nobody
        with pytest.raises(ReleaseError, match="did not answer at http://127.0.0.1:9/v1/parked/release"):
            release(tmp_path, None, me(), open_ledger)
    assert parked_now(tmp_path) == ["ship-9/events/1"]


# -- with a real node --------------------------------------------------------------------------------


def _harbour(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harbour_cli", "edge", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def _post_release(url: str, body: dict | bytes, token: str, **headers: str) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + RELEASE_PATH, data=data, method="POST",
                                     headers={"Content-Type": "application/json", TOKEN_HEADER: token, **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.integration
def test_while_a_node_runs_release_asks_the_node(tmp_path, start_edge):
    data = tmp_path / "ship"
    data.mkdir()
    parked_ledger(data, range(1, 4))
    node = start_edge(data, site=SITE)

    status, answer = _post_release(node.url, {"all": True}, token="guessed")
    assert status == 401 and "token" in answer["error"]
    token = read_holder(data).token
    status, answer = _post_release(node.url, {"segments": ["nonsense"]}, token=token)
    assert status == 400
    hostile = {  # the first was a 500 (found by fuzzing); each must be a 4xx that says why, and nothing released
        "nested 100,000 deep": (b"[" * 100_000, {}, 400),
        "not UTF-8": (b'{"all": tr\xffue}', {}, 400),
        "2 MiB": (b'{"segments": ["' + b"a" * 2 * 1024 * 1024 + b'"]}', {}, 413),
        "gzip that is not": (b'{"all": true}', {"Content-Encoding": "gzip"}, 400),
        "seq past the range": (b'{"segments": ["ship-9/events/99999999999999999999"]}', {}, 400),
    }
    for name, (body, headers, expected) in hostile.items():
        status, answer = _post_release(node.url, body, token=token, **headers)
        assert (status, answer["code"] != "internal") == (expected, True), (name, status, answer)
    assert parked_now(data) == ["ship-9/events/1", "ship-9/events/2", "ship-9/events/3"]

    released = _harbour("release", "--data", str(data), "ship-9/events/2")
    assert released.returncode == 0, released.stderr
    assert released.stdout == "released ship-9/events/2 (was parked: HTTP 409 chain conflict)\n"
    again = _harbour("release", "--data", str(data), "ship-9/events/2", "ship-9/events/3")
    assert again.returncode == 1 and "ship-9/events/2 is not parked" in again.stderr
    assert parked_now(data) == ["ship-9/events/1", "ship-9/events/3"]

    everything = _harbour("release", "--all", "--data", str(data))
    assert everything.returncode == 0 and everything.stdout.count("released ") == 2
    report = json.loads(_harbour("status", "--data", str(data), "--format", "json").stdout)
    assert report["parked"] == [] and node.proc.poll() is None
