"""The sync service's downlink part: the report carries what the ship holds and runs with, the answer's desired
state reaches the downloader and the managed settings, and managed settings change the running service."""

from __future__ import annotations

import random

from edge_node.config import EdgeConfig
from edge_node.managed import SettingsKeeper
from edge_node.sync.link import RatePacer
from edge_node.sync.service import SyncService
from sync_protocol import SiteId
from sync_protocol.downlink import DesiredState, ManagedSettings


def service(tmp_path, **overrides) -> SyncService:
    config = EdgeConfig(SiteId("ship-1"), tmp_path, hub_url="http://hub", hub_token="t", **overrides)
    keeper = SettingsKeeper(config)
    sync = SyncService(keeper.config, ledger=None, wal=None, usage=None, clock=lambda: 0.0, rng=random.Random(1),
                       settings=keeper)
    keeper.on_change = sync.reconfigure
    return sync


def test_managed_settings_in_the_answer_change_the_running_service_and_are_reported(tmp_path):
    sync = service(tmp_path, pinned=frozenset({"thin-link-max-class"}), thin_max_class=2)
    sync.pacer = RatePacer(None, lambda: 0.0)
    settings = ManagedSettings(7, {"metered": "true", "thin-link-below": "256kbit", "max-upload-rate": "1Mbit",
                                   "thin-link-max-class": "0"})
    sync._desire(DesiredState((), settings).to_json())
    assert sync.policy.metered and sync.policy.thin_max_class == 2  # pinned on board
    assert sync.monitor.thin_below_bps == 256_000 and sync.pacer.rate_bps == 1_000_000
    reported = sync.reported_downlink().to_dict()
    assert reported["settings"]["revision"] == 7 and reported["settings"]["pinned"] == {"thin-link-max-class": "2"}
    assert set(reported["settings"]["applied"]) == {"metered", "thin-link-below", "max-upload-rate"}


def test_a_malformed_answer_changes_nothing(tmp_path, caplog):
    sync = service(tmp_path)
    sync._desire(b'{"downlink": {"datasets": [{"name": "Offers!"}]}}')
    assert "ignoring the hub's answer" in caplog.text and sync.settings.outcome.revision == 0
