"""docs/protocol.md shows the state machines and errors as the code defines them (make docs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_sections_of_the_protocol_doc_are_current():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    text = (ROOT / "docs" / "protocol.md").read_text()
    assert generate.render(text) == text, "docs/protocol.md is stale: run `make docs`"
    assert "stateDiagram-v2" in text and "`checksum-mismatch` | 460" in text
