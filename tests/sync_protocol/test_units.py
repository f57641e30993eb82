from __future__ import annotations

import pytest

from sync_protocol.units import format_rate, format_size, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize("text,expected", [
    # what sync_protocol.units and the scenario files accepted
    ("20GiB", 20 * 2**30), ("64MiB", 64 * 2**20), ("512MB", 512 * 10**6), ("1048576", 2**20), ("1.5KiB", 1536),
    (" 7 b ", 7), ("2TB", 2 * 10**12), ("1TiB", 2**40),
    # what edge_node.config (the edge's command line) accepted: also the short forms
    ("20g", 20 * 10**9), ("20G", 20 * 10**9), ("64mib", 64 * 2**20), ("64mi", 64 * 2**20), ("500k", 500_000),
    ("1000", 1000), ("7 b", 7), ("3gi", 3 * 2**30), ("1.5t", 1_500_000_000_000),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("300", 300), ("30s", 30), ("5m", 300), ("2h", 7200), ("7d", 604800), ("250ms", 0.25), (" 1.5 h ", 5400),
])
def test_durations(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "soon", "5M", "-5s", "5 min", "1e3", "s"])
def test_bad_durations_name_the_accepted_spelling(text):
    with pytest.raises(ValueError, match="write e.g. 30s, 5m"):
        parse_duration(text)


@pytest.mark.parametrize("text,expected", [
    ("2Mbit", 2e6), ("256kbit/s", 256e3), ("100Mbps", 1e8), ("1.5Gbit", 1.5e9), ("9600bit", 9600),
])
def test_rates_are_bits_per_second(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "-1GiB", "20 parsecs", "1e9", "NaN", "2 Mbit Mbit", "inf", "7bb",
                                  "5i", "20gbb", "2Mbit"])
def test_bad_sizes_name_the_accepted_spelling(text):
    with pytest.raises(ValueError, match="write e.g."):
        parse_size(text)


@pytest.mark.parametrize("text", ["", "2MB", "fast", "-2Mbit", "2Mbit/h"])
def test_bad_rates(text):
    with pytest.raises(ValueError, match="bits per second"):
        parse_rate(text)


def test_formatting():
    assert format_size(1536) == "1.5 KiB" and format_size(3) == "3 B" and format_size(512) == "512 B"
    assert format_size(3 * 2**30) == "3.0 GiB" and format_size(2 * 2**40) == "2.0 TiB"
    assert format_rate(2_500_000) == "2.5 Mbit/s" and format_rate(10) == "10 bit/s"
