"""`harbour scenario run`: exit 0 only when nothing was lost; 1 when the checker finds loss; 2 for a bad file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The ship's link never comes up, not even for the drain: every row it acknowledged stays on board, so
# the checker must report them lost and the command must fail.
NEVER_IN_RANGE = """
[scenario]
name = "never-in-range"
simulated_hours = 2
real_seconds = 4
drain_timeout_seconds = 3
drain_profile = "blackout"

[edge]
seal_age = "1s"
log_level = "warning"

[tables.telemetry]
workload = "telemetry"
rows_per_second = 100

[links.blackout]
up = false

[[ships]]
name = "lonely"
voyage = [["blackout", 2]]
"""


def harbour(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harbour_cli", "scenario", *args], capture_output=True, text=True,
                          timeout=180)


@pytest.mark.integration
def test_rows_that_never_reach_the_hub_fail_the_run_with_a_report(tmp_path):
    scenario = tmp_path / "never.toml"
    scenario.write_text(NEVER_IN_RANGE)
    result = harbour("run", str(scenario), "--seed", "3", "--report", str(tmp_path / "report"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL: never-in-range seed 3" in result.stdout and "replay with --seed 3" in result.stdout
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["passed"] is False and report["check"]["totals"]["lost"] == report["check"]["totals"]["acked"] > 0
    assert "kept in" in result.stdout  # the data directories stay for a post-mortem


def test_a_wrong_file_is_a_usage_error_naming_the_key(tmp_path):
    scenario = tmp_path / "bad.toml"
    scenario.write_text(NEVER_IN_RANGE.replace('up = false', 'up = "no"'))
    result = harbour("run", str(scenario))
    assert result.returncode == 2 and "[links.blackout] up must be true or false" in result.stderr


def test_help_lists_the_shipped_scenarios():
    result = harbour("run", "--help")
    assert result.returncode == 0 and "cruise-fleet" in result.stdout and "--seed" in result.stdout
