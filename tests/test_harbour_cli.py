"""The installed `harbour` command starts and explains itself (run as a real process)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HARBOUR = shutil.which("harbour", path=str(Path(sys.executable).parent)) or "harbour"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([HARBOUR, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args", [(), ("hub",), ("edge",), ("scenario",)])
def test_help_works_for_the_command_and_each_group(args):
    result = run(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: harbour" in result.stdout


def test_top_level_help_lists_the_three_groups():
    out = run("--help").stdout
    for group in ("hub", "edge", "scenario"):
        assert f"  {group} " in out


def test_an_unknown_command_fails_with_a_message():
    result = run("dock")
    assert result.returncode == 2 and "No such command" in result.stderr


def demo_seed(*args: str, env: dict | None = None) -> str:
    import os

    result = subprocess.run([HARBOUR, *args], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0]


def test_flags_win_over_environment_which_wins_over_the_config_file(tmp_path):
    config = tmp_path / "harbour.toml"
    config.write_text("[scenario.protocol-demo]\nseed = 3\n")
    assert "(seed 3)" in demo_seed("--config", str(config), "scenario", "protocol-demo")
    assert "(seed 3)" in demo_seed("scenario", "protocol-demo", "--config", str(config))
    env = {"HARBOUR_SCENARIO_SEED": "9"}
    assert "(seed 9)" in demo_seed("--config", str(config), "scenario", "protocol-demo", env=env)
    assert "(seed 4)" in demo_seed("--config", str(config), "scenario", "protocol-demo", "--seed", "4", env=env)


@pytest.mark.parametrize("content,message", [
    ("[scenario", "not valid TOML"),
    ("[ship]\nx = 1\n", "unknown section(s) ship"),
    ("[scenario]\nseed = 'x'\n", "'x' is not a valid integer"),
    (b"\xff\xfe[", "not valid TOML"),
])
def test_a_bad_config_file_is_a_clear_error(tmp_path, content, message):
    config = tmp_path / "bad.toml"
    config.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run("--config", str(config), "scenario", "protocol-demo")
    assert result.returncode == 2 and message in result.stderr


def test_every_command_takes_config_and_names_its_environment_variables():
    for args in (("edge", "run"), ("edge", "status"), ("hub", "run"), ("hub", "query"), ("scenario", "protocol-demo")):
        out = run(*args, "--help").stdout
        assert "--config" in out and "HARBOUR_" in out, args


def test_a_missing_config_file_is_a_clear_error(tmp_path):
    result = run("--config", str(tmp_path / "absent.toml"), "scenario", "--help")
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_environment_variables_are_named_after_the_flags_on_every_command(tmp_path):
    data = tmp_path / "ship-data"
    data.mkdir()
    result = run("edge", "status", env={"HARBOUR_EDGE_DATA": str(data), "HARBOUR_EDGE_FORMAT": "json"})
    assert result.returncode == 0, result.stderr  # was HARBOUR_EDGE_DATA_DIR / HARBOUR_EDGE_FMT here only
    assert result.stdout.lstrip().startswith("{")
    for args, variable in ((("edge", "run"), "HARBOUR_EDGE_DATA"), (("edge", "status"), "HARBOUR_EDGE_DATA"),
                           (("edge", "run"), "HARBOUR_EDGE_MAX_DISK"), (("hub", "query"), "HARBOUR_HUB_FORMAT"),
                           (("hub", "run"), "HARBOUR_HUB_DATA"), (("scenario", "run"), "HARBOUR_SCENARIO_REPORT")):
        out = " ".join(run(*args, "--help").stdout.split())
        assert out.count(variable + ";") + out.count(variable + "]") == 1, (args, variable, out)


def test_config_keys_are_the_flag_names_and_unknown_keys_are_refused(tmp_path):
    data = tmp_path / "ship-data"
    data.mkdir()
    config = tmp_path / "edge.toml"
    config.write_text(f'[edge]\ndata = "{data}"\nhub = "http://hub.invalid:8700"\n[edge.status]\nformat = "json"\n')
    result = run("edge", "status", "--config", str(config))
    assert result.returncode == 0 and result.stdout.lstrip().startswith("{"), result.stderr
    config.write_text(f'[edge]\ndata_dir = "{data}"\n')
    wrong = run("edge", "status", "--config", str(config))
    assert wrong.returncode == 2 and "unknown key(s) data_dir" in wrong.stderr and "data" in wrong.stderr
    config.write_text('[edge.status]\nmax-disk = "1g"\n')  # an edge option, but not one of `edge status`
    wrong = run("edge", "status", "--config", str(config))
    assert wrong.returncode == 2 and "[edge.status] has unknown key(s) max-disk" in wrong.stderr
    config.write_text('[edge.stauts]\nformat = "json"\n')
    wrong = run("edge", "status", "--config", str(config))
    assert wrong.returncode == 2 and "[edge.stauts] names no command" in wrong.stderr


def test_formats_and_log_levels_are_spelled_alike_on_both_sides():
    edge_status = " ".join(run("edge", "status", "--help").stdout.split())
    hub_status = " ".join(run("hub", "status", "--help").stdout.split())
    assert "[table|json]" in edge_status and "[table|json]" in hub_status
    for group in ("edge", "hub"):
        text = " ".join(run(group, "run", "--help").stdout.split())
        assert "[debug|info|warning|error]" in text and "default: info" in text, group
