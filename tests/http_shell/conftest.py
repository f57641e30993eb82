"""A real hub and a real edge, for the tests that speak to both (the OpenAPI descriptions, fuzzing)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

HARBOUR = [sys.executable, "-m", "harbour_cli"]
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _harbour(*args: str) -> str:
    return subprocess.run([*HARBOUR, *args], capture_output=True, text=True, cwd=REPO, timeout=120,
                          check=True).stdout.strip()


def _start_hub(data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen([*HARBOUR, "hub", "run", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
                                   stdout=out, stderr=out, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the hub did not start: {log.read_text()[-2000:]}")


def _start_edge(data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    with open(log, "ab") as err:
        process = subprocess.Popen([*HARBOUR, "edge", "run", "--site", "ship-1", "--data", str(data), "--listen",
                                    "127.0.0.1:0", "--log-level", "WARNING"], stdout=subprocess.PIPE, stderr=err,
                                   cwd=REPO)
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    if not lines or b"listening on" not in lines[0]:
        process.kill()
        raise AssertionError(f"the edge did not start: {log.read_text()[-2000:]}")
    return process, lines[0].decode().split()[-1]


@pytest.fixture(scope="module")
def hub_and_edge(tmp_path_factory):
    """``hub_url``, ``edge_url``, their processes and log files, the hub's DATA, the edge's DATA, a site token
    (``site_token``, site ship-1) and an operator token (``operator_token``)."""
    base = tmp_path_factory.mktemp("servers")
    hub_data, edge_data = base / "hub", base / "edge"
    site_token = _harbour("hub", "add-site", "ship-1", "--data", str(hub_data))
    operator_token = _harbour("hub", "add-operator", "ops", "--data", str(hub_data))
    hub, hub_url = _start_hub(hub_data, base / "hub.log")
    edge, edge_url = _start_edge(edge_data, base / "edge.log")
    yield SimpleNamespace(hub=hub, hub_url=hub_url, hub_log=base / "hub.log", hub_data=hub_data, edge=edge,
                          edge_url=edge_url, edge_log=base / "edge.log", edge_data=edge_data,
                          site_token=site_token, operator_token=operator_token)
    for process in (hub, edge):
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


os.environ.setdefault("PYTHONUNBUFFERED", "1")
