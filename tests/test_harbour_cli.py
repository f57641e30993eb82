"""The installed `harbour` command starts and explains itself (run as a real process)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HARBOUR = shutil.which("harbour", path=str(Path(sys.executable).parent)) or "harbour"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HARBOUR, *args], capture_output=True, text=True, timeout=60)


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
