"""`harbour hub ...` as an operator runs it: real subprocesses, garbage arguments included."""

from __future__ import annotations

import json

import pytest

from .conftest import harbour

pytestmark = pytest.mark.integration


def test_add_site_prints_only_the_token_and_creates_dir(tmp_path):
    data = tmp_path / "new" / "hub"
    result = harbour("hub", "add-site", "ship-1", "--data", str(data))
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hbs_") and len(lines[0]) >= 47
    assert (data / "hub.db").exists()
    status = json.loads(harbour("hub", "status", "--data", str(data), "--format", "json").stdout)
    assert [s["site"] for s in status["sites"]] == ["ship-1"]


@pytest.mark.parametrize("args", [
    ["hub", "add-site", "Ship_1"], ["hub", "add-site", "../etc"], ["hub", "add-site", ""],
    ["hub", "add-site", "-x"], ["hub", "revoke-site", "UPPER"], ["hub", "run", "--listen", "nope"],
    ["hub", "run", "--listen", "127.0.0.1:99999"], ["hub", "query", "--format", "xml", "SELECT 1"],
    ["hub", "status", "--format", "yaml"], ["hub", "add-operator"],
])
def test_garbage_arguments_are_usage_errors(tmp_path, args):
    result = harbour(*args, "--data", str(tmp_path / "d"), check=False)
    assert result.returncode == 2, result
    assert "Error" in result.stderr and result.stdout == ""


def test_operator_errors_say_what_to_do(tmp_path):
    data = str(tmp_path / "d")
    harbour("hub", "add-site", "ship-1", "--data", data)
    again = harbour("hub", "add-site", "ship-1", "--data", data, check=False)
    assert again.returncode == 1 and "--rotate" in again.stderr
    ghost = harbour("hub", "revoke-site", "ghost", "--data", data, check=False)
    assert ghost.returncode == 1 and "not registered" in ghost.stderr
    bad_sql = harbour("hub", "query", "--data", data, "SELEC nonsense", check=False)
    assert bad_sql.returncode == 1 and "nothing has been merged" in bad_sql.stderr
    assert harbour("hub", "add-operator", "Bad Name", "--data", data, check=False).returncode == 1


def test_query_on_an_empty_hub(tmp_path):
    out = harbour("hub", "query", "--data", str(tmp_path / "d"), "--format", "csv", "SELECT 42 AS answer")
    assert out.stdout.splitlines() == ["answer", "42"]


def test_config_file_and_environment(tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\ndata = "{tmp_path / "from-file"}"\n')
    harbour("--help")
    harbour("--config", str(config), "hub", "add-site", "ship-1")
    assert (tmp_path / "from-file" / "hub.db").exists()
    harbour("hub", "add-site", "ship-2", "--config", str(config), env={"HARBOUR_HUB_DATA": str(tmp_path / "env")})
    assert (tmp_path / "env" / "hub.db").exists()  # the environment wins over the file
    harbour("hub", "add-site", "ship-3", "--config", str(config), "--data", str(tmp_path / "flag"),
            env={"HARBOUR_HUB_DATA": str(tmp_path / "env")})
    assert (tmp_path / "flag" / "hub.db").exists()  # the flag wins over both
    broken = tmp_path / "broken.toml"
    broken.write_text("[hub\n")
    assert harbour("hub", "status", "--config", str(broken), check=False).returncode == 2


def test_help_on_every_command():
    for command in ("run", "add-site", "revoke-site", "add-operator", "status", "query"):
        assert "--data" in harbour("hub", command, "--help").stdout
