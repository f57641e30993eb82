from __future__ import annotations

import pytest


def _minimal(**overrides) -> dict:
    """The smallest valid scenario file, as TOML would load it."""
    data = {
        "scenario": {"name": "t", "simulated_hours": 10, "real_seconds": 5},
        "tables": {"telemetry": {"workload": "telemetry", "rows_per_second": 10}},
        "links": {"port": {"rate": "100Mbit"}, "at-sea": {"rate": "256kbit", "rtt_ms": 600}},
        "ships": [{"name": "aurora", "voyage": [["port", 2], ["at-sea", 8]]}],
    }
    data.update(overrides)
    return data


@pytest.fixture
def minimal():
    return _minimal
