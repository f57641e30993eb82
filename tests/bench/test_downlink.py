"""The downlink benchmark's instrument: the proxy's body meter finds the metered responses in a connection's byte
stream however the reads split it, counts exactly their bodies, and cuts after the given body bytes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from downlink import BodySpan, _BodyMeter  # noqa: E402


class Writer:
    transport = None

    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data


class Proxy:
    """What the meter asks of a ``MeteredProxy``: the clock, and where body bytes go."""

    def __init__(self) -> None:
        self.body = BodySpan(free_bytes=0)
        self.t = 0.0

    def now(self) -> float:
        self.t += 1.0
        return self.t

    def body_forwarded(self, n: int, now: float) -> None:
        self.body.add(n, now)


def response(body: bytes, marker: str | None) -> bytes:
    extra = f"{marker}: 3\r\n" if marker else ""
    return (f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(body)}\r\n{extra}"
            f"Content-Type: application/vnd.apache.arrow.stream\r\n\r\n").encode() + body


@pytest.mark.parametrize("split", [1, 7, 100, 16 * 1024])
def test_only_the_bodies_of_metered_responses_are_counted_however_the_reads_split_them(split):
    stream = (response(b'{"downlink": {}}', None) + response(b"x" * 5000, "Harbour-Dataset-Version")
              + response(b"\r\n\r\nHTTP/1.1 200" * 10, None) + response(b"y" * 3000, "x-bench-file"))
    proxy, writer = Proxy(), Writer()
    meter = _BodyMeter(writer, proxy)
    for at in range(0, len(stream), split):
        meter.write(stream[at:at + split])
    assert writer.sent == stream  # forwarded untouched
    assert proxy.body.bytes == 8000 and proxy.body.responses == 2


def test_the_rate_leaves_out_what_left_at_once():
    span = BodySpan(free_bytes=100)
    span.add(40, 10.0)
    span.add(1060, 12.0)
    assert span.seconds == 2.0 and span.bytes_per_second == (1100 - 100) / 2.0
    assert BodySpan(free_bytes=0).bytes_per_second == 0.0
