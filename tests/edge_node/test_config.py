"""The validated node settings (sizes and durations: tests/sync_protocol/test_units.py)."""

from pathlib import Path

import pytest

from edge_node.config import EdgeConfig
from sync_protocol import SiteId


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
