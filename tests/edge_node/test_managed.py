"""Managed settings: the hub's values apply unless pinned on board, survive a restart, and bad ones are refused."""

from __future__ import annotations

import click
from click.testing import CliRunner

from edge_node.cli import pinned_on_board
from edge_node.config import EdgeConfig
from edge_node.managed import CLI_PARAMETERS, SETTINGS_FILE, SettingsKeeper, resolve
from sync_protocol import SiteId
from sync_protocol.downlink import MANAGED_SETTINGS, ManagedSettings


def config(tmp_path, **overrides) -> EdgeConfig:
    return EdgeConfig(site=SiteId("ship-1"), data_dir=tmp_path, **overrides)


HUB = ManagedSettings(4, {"priority": "offers=1,telemetry=0", "metered": "true", "max-upload-rate": "2Mbit",
                          "seal-size": "8MiB", "seal-age": "30s", "thin-link-below": "512kbit",
                          "thin-link-max-class": "2"})


def test_the_hubs_values_apply_where_nothing_is_pinned(tmp_path):
    effective, outcome = resolve(config(tmp_path), HUB)
    assert effective.priorities == {"offers": 1, "telemetry": 0} and effective.dataset_priority_of("offers") == 1
    assert (effective.metered, effective.max_upload_rate_bps, effective.seal_bytes, effective.seal_age_seconds,
            effective.thin_below_bps, effective.thin_max_class) == (True, 2e6, 8 * 1024**2, 30.0, 512e3, 2)
    assert outcome.revision == 4 and set(outcome.applied) == set(MANAGED_SETTINGS) and not outcome.pinned


def test_an_option_set_on_board_wins_and_is_reported_pinned_with_the_local_value(tmp_path):
    local = config(tmp_path, priorities={"offers": 7}, metered=False, pinned=frozenset({"priority", "metered"}))
    effective, outcome = resolve(local, HUB)
    assert effective.priorities == {"offers": 7} and effective.metered is False
    assert outcome.pinned == {"priority": "offers=7", "metered": "false"}
    assert "priority" not in outcome.applied and outcome.applied["seal-age"] == "30s"


def test_a_value_the_node_cannot_take_is_refused_and_the_nodes_own_stays(tmp_path):
    effective, outcome = resolve(config(tmp_path), ManagedSettings(1, {"seal-age": "0s", "seal-size": "1MiB"}))
    assert "seal-age" in outcome.refused and effective.seal_age_seconds == config(tmp_path).seal_age_seconds
    assert outcome.applied == {"seal-size": "1MiB"}


def test_settings_persist_so_a_restart_offline_runs_with_them_and_a_withdrawn_value_reverts(tmp_path):
    changes = []
    keeper = SettingsKeeper(config(tmp_path))
    keeper.on_change = changes.append
    keeper.apply(HUB)
    assert changes and changes[-1].metered is True
    restarted = SettingsKeeper(config(tmp_path))  # no hub answer yet: the file says what head office asked
    assert restarted.config.metered is True and restarted.outcome.revision == 4
    restarted.apply(ManagedSettings(5, {}))
    assert restarted.config == config(tmp_path) and restarted.outcome.applied == {}


def test_an_unreadable_settings_file_means_the_nodes_own(tmp_path):
    (tmp_path / SETTINGS_FILE).write_text('{"revision": 2, "values": {"seal-size": "huge"}}')
    assert SettingsKeeper(config(tmp_path)).config == config(tmp_path)


def test_pinned_are_the_options_given_by_flag_environment_or_config_file(tmp_path):
    seen = {}

    @click.command(context_settings={"default_map": {"seal_age": "1m"}})
    @click.option("--priority", "priorities", multiple=True)
    @click.option("--seal-size", default="64MiB")
    @click.option("--seal-age", default="5m")
    @click.option("--metered/--unmetered", default=False, envvar="TEST_METERED")
    @click.option("--max-upload-rate")
    @click.option("--thin-link-below", default="1Mbit")
    @click.option("--thin-link-max-class", default=1)
    def command(**_):
        seen["pinned"] = pinned_on_board(click.get_current_context())

    result = CliRunner().invoke(command, ["--priority", "offers=1"], env={"TEST_METERED": "1"})
    assert result.exit_code == 0, result.output
    assert seen["pinned"] == {"priority", "metered", "seal-age"}
    assert set(CLI_PARAMETERS) == set(MANAGED_SETTINGS)
