"""benchmarks/doc_blocks.py: a benchmark rewrites only its own block of docs/BENCHMARKS.md."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("doc_blocks", ROOT / "benchmarks" / "doc_blocks.py")
assert SPEC and SPEC.loader
doc_blocks = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(doc_blocks)


def test_a_block_is_replaced_in_place_and_the_rest_of_the_page_kept(tmp_path: Path) -> None:
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n\nhand-written notes\n")
    doc_blocks.write_block(page, "a", "first figures")
    doc_blocks.write_block(page, "b", "other script")
    doc_blocks.write_block(page, "a", "second figures\n")
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written notes\n")
    assert "first figures" not in text and text.count("second figures") == 1
    assert text.index("second figures") < text.index("other script")  # replaced where it stood, not appended
    assert text.count("<!-- a: begin -->") == 1 and text.count("<!-- b: end -->") == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_a_new_page_gets_the_block(tmp_path: Path) -> None:
    page = tmp_path / "new.md"
    doc_blocks.write_block(page, "a", "figures")
    assert page.read_text() == "<!-- a: begin -->\nfigures\n<!-- a: end -->\n"
