"""Shared fixtures for the edge node tests: a real ``harbour edge run`` process, and HTTP helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from edge_node.codecs import ARROW_STREAM, encode_arrow_stream

START_TIMEOUT_SECONDS = 30.0
REPO = Path(__file__).resolve().parents[2]


class EdgeProcess:
    """``harbour edge run`` as a subprocess on a free port (``--listen 127.0.0.1:0``)."""

    def __init__(self, data_dir: Path, site: str = "ship-1", *args: str) -> None:
        self.data_dir = data_dir
        command = [sys.executable, "-m", "harbour_cli", "edge", "run", "--site", site, "--data", str(data_dir),
                   "--listen", "127.0.0.1:0", "--log-level", "WARNING", *args]
        self.stderr_path = data_dir.parent / f"{data_dir.name}-stderr.log"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115 -- kept open for the process's life
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr, cwd=REPO)
        self.url = self._wait_listening()

    def _wait_listening(self) -> str:
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(self.proc.stdout.readline().decode()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_SECONDS)
        line = found[0].strip() if found else ""
        if not line.startswith("harbour edge listening on "):
            self.kill()
            raise RuntimeError(f"edge did not start: {line!r}\n{self.stderr_path.read_text()[-3000:]}")
        return line.rsplit(" ", 1)[1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._stderr.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._stderr.close()
        return code

    def stderr(self) -> str:
        return self.stderr_path.read_text()


@pytest.fixture
def start_edge() -> Iterator:
    started: list[EdgeProcess] = []

    def start(data_dir: Path, *args: str, site: str = "ship-1") -> EdgeProcess:
        process = EdgeProcess(data_dir, site, *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture(scope="module")
def shared_edge(tmp_path_factory) -> Iterator[EdgeProcess]:
    """One edge process (max body 1 MiB) for a module of tests that each leave it as they found it."""
    process = EdgeProcess(tmp_path_factory.mktemp("shared") / "edge", "ship-1", "--max-body", "1MiB")
    yield process
    process.kill()


def post(url: str, table: str, body: bytes, content_type: str = ARROW_STREAM,
         headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict]:
    """POST a body; returns (status, decoded JSON). Raises on connection failure."""
    request = urllib.request.Request(f"{url}/v1/tables/{table}", data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def arrow_body(table: pa.Table) -> bytes:
    return encode_arrow_stream(table)


@pytest.fixture
def http() -> object:
    """The HTTP helpers, as a fixture (tests import nothing from conftest)."""

    class Http:
        pass

    helpers = Http()
    helpers.post = post  # type: ignore[attr-defined]
    helpers.get = get  # type: ignore[attr-defined]
    helpers.arrow = arrow_body  # type: ignore[attr-defined]
    return helpers


def seed_dataset(data_dir: Path, name: str, version: int, data: pa.Table | bytes) -> bytes:
    """Put a verified version of a reference dataset on board, as the downloader would; returns its bytes."""
    import hashlib

    from edge_node.datasets import DatasetStore
    from sync_protocol.downlink import DatasetOffer

    data = data if isinstance(data, bytes) else encode_arrow_stream(data)
    store = DatasetStore(data_dir, lambda: 1000.0)
    offer = DatasetOffer(name, version, hashlib.sha256(data).hexdigest(), len(data))
    partial = store.partial(offer, 0)
    partial.open(0)
    partial.write(data)
    partial.checkpoint()
    partial.close()
    store.switch(offer)
    return data


@pytest.fixture(name="seed_dataset")
def seed_dataset_fixture():
    return seed_dataset


os.environ.setdefault("PYTHONUNBUFFERED", "1")
