from __future__ import annotations

import pytest

from sync_protocol.units import format_rate, format_size, parse_rate, parse_size


@pytest.mark.parametrize("text,expected", [
    ("20GiB", 20 * 2**30), ("64MiB", 64 * 2**20), ("512MB", 512 * 10**6), ("1048576", 2**20), ("1.5KiB", 1536),
    (" 7 b ", 7),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("2Mbit", 2e6), ("256kbit/s", 256e3), ("100Mbps", 1e8), ("1.5Gbit", 1.5e9), ("9600bit", 9600),
])
def test_rates_are_bits_per_second(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "-1GiB", "20 parsecs", "1e9", "NaN", "2 Mbit Mbit", "inf"])
def test_bad_sizes_name_the_accepted_spelling(text):
    with pytest.raises(ValueError, match="write e.g."):
        parse_size(text)


@pytest.mark.parametrize("text", ["", "2MB", "fast", "-2Mbit", "2Mbit/h"])
def test_bad_rates(text):
    with pytest.raises(ValueError, match="bits per second"):
        parse_rate(text)


def test_formatting():
    assert format_size(1536) == "1.5 KiB" and format_size(3) == "3 B"
    assert format_rate(2_500_000) == "2.5 Mbit/s" and format_rate(10) == "10 bit/s"
