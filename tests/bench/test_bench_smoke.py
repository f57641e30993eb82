"""The benchmark suite runs: ``bench/run.py --quick --only formats`` exits 0 and writes its JSON, and
``bench/render.py`` turns that JSON into a page. The benchmarks themselves are never part of a test run
(``make bench``); this only guards the entry points against rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_quick_bench_runs_writes_json_and_renders(tmp_path: Path) -> None:
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, "bench/run.py", "--quick", "--only", "formats", "--results", str(results)],
                         cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    document = json.loads((results / "formats.json").read_text())
    assert document["quick"] is True and document["name"] == "formats"
    encodings = {f["encoding"] for f in document["figures"] if f["dataset"] == "telemetry"}
    assert {"raw_arrow_ipc", "harbour_segment", "default_parquet", "json_gzip"} <= encodings
    raw = next(f for f in document["figures"] if f["encoding"] == "raw_arrow_ipc" and f["dataset"] == "telemetry")
    assert raw["ratio_to_raw_arrow"] == 1.0

    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    render = subprocess.run([sys.executable, "bench/render.py", "--results", str(results), "--out", str(page)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert render.returncode == 0, render.stderr[-2000:]
    text = page.read_text()
    assert "## Summary" in text and "harbour_segment" in text
    assert (tmp_path / "docs" / "img" / "bench_formats.png").stat().st_size > 0
