"""Sizes, durations and the validated node settings."""

from pathlib import Path

import pytest

from edge_node.config import EdgeConfig, format_size, parse_duration, parse_size
from sync_protocol import SiteId


@pytest.mark.parametrize(("text", "size"), [
    ("20GiB", 20 * 2**30), ("512MB", 512 * 10**6), ("64mib", 64 * 2**20), ("1000", 1000), ("1.5KiB", 1536),
    ("7 b", 7),
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "-1GiB", "12 parsecs", "1e9"])
def test_parse_size_refuses_nonsense_with_an_example(text):
    with pytest.raises(ValueError, match="20GiB"):
        parse_size(text)


@pytest.mark.parametrize(("text", "seconds"), [("300", 300), ("30s", 30), ("5m", 300), ("2h", 7200),
                                               ("7d", 604800), ("250ms", 0.25)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_refuses_nonsense():
    with pytest.raises(ValueError, match="5m"):
        parse_duration("soon")


def test_format_size():
    assert format_size(512) == "512 B"
    assert format_size(3 * 2**30) == "3.0 GiB"


def test_config_rejects_non_positive_limits(tmp_path: Path):
    with pytest.raises(ValueError):
        EdgeConfig(SiteId("ship-1"), tmp_path, max_disk_bytes=0)
    with pytest.raises(ValueError):
        EdgeConfig(SiteId("ship-1"), tmp_path, seal_age_seconds=0)


def test_priority_defaults_to_the_middle_class(tmp_path: Path):
    config = EdgeConfig(SiteId("ship-1"), tmp_path, priorities={"alarms": 0})
    assert config.priority_of("alarms") == 0
    assert config.priority_of("telemetry") == 5


def test_token_is_not_in_repr(tmp_path: Path):
    config = EdgeConfig(SiteId("ship-1"), tmp_path, hub_token="s3cret")
    assert "s3cret" not in repr(config)
