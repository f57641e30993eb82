"""The generated parts of docs/ are current (make docs): docs/protocol.md shows the state machines and errors
as the code defines them, docs/architecture.md the tests marked for each guarantee."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generate():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    return generate


def test_generated_sections_of_the_protocol_doc_are_current():
    generate = _generate()
    text = (ROOT / "docs" / "protocol.md").read_text()
    assert generate.render(text) == text, "docs/protocol.md is stale: run `make docs`"
    assert "stateDiagram-v2" in text and "`checksum-mismatch` | 460" in text


def test_the_guarantee_table_of_the_architecture_doc_is_current():
    generate = _generate()
    text = (ROOT / "docs" / "architecture.md").read_text()
    stale = "docs/architecture.md is stale: run `make docs`"
    assert generate.render(text, generate.architecture_sections) == text, stale
    assert "| G1 durable ack |" in text and "`tests/edge_node/test_crash_recovery.py`" in text
