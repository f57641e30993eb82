"""Regenerate the parts of docs/ that come from code (run: `make docs`).

Each generated part sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`;
`tests/test_docs.py` fails when a part is stale, so the docs cannot drift from the tables
(protocol.md: the state machines and errors) or from the tests (architecture.md: which tests
defend each guarantee, read from their `guarantee` markers).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path

from sync_protocol.diagram import generated_sections

DOCS = Path(__file__).parent
ROOT = DOCS.parent
PROTOCOL_DOC = DOCS / "protocol.md"
ARCHITECTURE_DOC = DOCS / "architecture.md"


def guarantee_index():
    """tests/guarantee_index.py, loaded by path: tests/ is not a package (the tests get it from here too)."""
    spec = importlib.util.spec_from_file_location("guarantee_index", ROOT / "tests" / "guarantee_index.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def architecture_sections() -> dict[str, str]:
    index = guarantee_index()
    return {"guarantee-tests": index.markdown_table(index.all_marks(ROOT))}


# Each doc with generated parts, and where its parts come from.
SOURCES: dict[Path, Callable[[], dict[str, str]]] = {
    PROTOCOL_DOC: generated_sections,
    ARCHITECTURE_DOC: architecture_sections,
}


def render(text: str, sections: Callable[[], dict[str, str]] = generated_sections,
           doc: str = "docs/protocol.md") -> str:
    for name, body in sections().items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{doc} has no markers for generated section {name!r}")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


def main() -> int:
    for path, sections in SOURCES.items():
        old = path.read_text()
        new = render(old, sections, f"docs/{path.name}")
        if new != old:
            path.write_text(new)
            print(f"updated {path}")
        else:
            print(f"{path} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
