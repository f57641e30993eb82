from __future__ import annotations

import subprocess
import sys

from scenarios.protocol_demo import run_demo


def test_demo_passes_and_reports_every_ship():
    lines: list[str] = []
    assert run_demo(seed=11, echo=lines.append)
    text = "\n".join(lines)
    assert "PASS" in text and all(ship in text for ship in ("aurora", "borealis", "corona"))
    assert "truncate body" in text  # faults were really injected


def test_demo_replays_from_its_seed():
    first: list[str] = []
    second: list[str] = []
    run_demo(seed=3, echo=first.append)
    run_demo(seed=3, echo=second.append)
    assert first == second


def test_demo_command_exits_zero():
    result = subprocess.run([sys.executable, "-m", "harbour_cli", "scenario", "protocol-demo", "--seed", "5"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "PASS" in result.stdout
