"""Regenerate the parts of docs/protocol.md that come from code (run: `make docs`).

Each generated part sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`;
`tests/test_docs.py` fails when a part is stale, so the docs cannot drift from the tables.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sync_protocol.diagram import generated_sections

PROTOCOL_DOC = Path(__file__).with_name("protocol.md")


def render(text: str) -> str:
    for name, body in generated_sections().items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"docs/protocol.md has no markers for generated section {name!r}")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


def main() -> int:
    old = PROTOCOL_DOC.read_text()
    new = render(old)
    if new != old:
        PROTOCOL_DOC.write_text(new)
        print(f"updated {PROTOCOL_DOC}")
    else:
        print(f"{PROTOCOL_DOC} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
