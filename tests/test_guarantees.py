"""Every guarantee of the design (G1-G8) is named in the tests that defend it (STYLE.md 10), and no marker
names a guarantee that does not exist; the index behind docs/architecture.md's table reads the markers right."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _index():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    return generate.guarantee_index()


index = _index()


def test_every_guarantee_has_a_test_that_tries_to_break_it():
    defenders = index.defenders(index.all_marks(ROOT))
    undefended = [gid for gid, marks in defenders.items() if not marks]
    assert not undefended, f"no test is marked @pytest.mark.guarantee for {undefended}"


def test_markers_name_only_the_guarantees_of_the_design():
    marks = index.all_marks(ROOT)
    assert marks, "found no guarantee markers at all: has the marker been renamed?"
    wrong = [f"{m.path}:{m.line} {m.test} names {m.unknown or 'nothing'}" for m in marks if m.unknown or not m.ids]
    assert not wrong, f"guarantee markers must name one of {sorted(index.GUARANTEES)}: {wrong}"


def test_markers_sit_on_tests():
    marks = index.all_marks(ROOT)
    stray = [f"{m.path}:{m.line} {m.test}" for m in marks
             if m.test != "*" and not m.test.rsplit("::", 1)[-1].startswith(("test_", "Test"))]
    assert not stray, f"a guarantee marker on something pytest does not run as a test: {stray}"


def test_the_index_reads_every_way_of_writing_the_marker(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_sample.py").write_text(
        "import pytest\nfrom pytest import mark\n"
        "pytestmark = [pytest.mark.integration, pytest.mark.guarantee('G8')]\n"
        "@pytest.mark.guarantee('G1', 'G2')\ndef test_a(): pass\n"
        "@mark.guarantee('G9')\nasync def test_b(): pass\n"
        "class TestC:\n    @pytest.mark.guarantee(NAME)\n    def test_d(self): pass\n"
        "@pytest.mark.integration\ndef test_unmarked(): pass\n")
    marks = index.all_marks(tmp_path)
    assert [(m.test, m.ids) for m in marks] == [("*", ("G8",)), ("test_a", ("G1", "G2")), ("test_b", ("G9",)),
                                                 ("TestC::test_d", ("NAME",))]
    assert [m.unknown for m in marks] == [(), (), ("G9",), ("NAME",)]
    table = index.markdown_table(marks)
    assert "| G1 durable ack | `tests/test_sample.py`: `test_a` |" in table
    assert "| G8 provable completeness | `tests/test_sample.py`: all |" in table
    assert "| G3 resume | **none** |" in table
