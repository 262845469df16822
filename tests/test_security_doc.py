"""docs/security.md cites, for each promise, the tests that prove it: each cited test exists, and each attack
of tests/bad_inputs/test_attacks.py is cited (a promise without its test, or a test without its promise,
fails here)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"
CITATION = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")}


def test_every_cited_test_exists():
    citations = CITATION.findall(DOC.read_text(encoding="utf-8"))
    assert len(citations) > 30
    missing = [f"{file}::{name}" for file, name in citations
               if not (ROOT / file).exists() or name not in _tests_in(ROOT / file)]
    assert missing == []


def test_no_test_file_is_cited_without_its_test():
    """Every citation names a test, not a whole file: `tests/x.py` alone would prove nothing in particular."""
    text = CITATION.sub("", DOC.read_text(encoding="utf-8"))
    assert re.findall(r"`tests/[\w/]+\.py`", text) == []


def test_every_attack_is_cited():
    cited = {name for file, name in CITATION.findall(DOC.read_text(encoding="utf-8"))
             if file == "tests/bad_inputs/test_attacks.py"}
    assert _tests_in(ROOT / "tests" / "bad_inputs" / "test_attacks.py") - cited == set()


def test_every_item_of_issue_21_has_a_row():
    numbers = set(re.findall(r"^\| (\d+) \|", DOC.read_text(encoding="utf-8"), re.MULTILINE))
    assert numbers == {str(n) for n in range(1, 12)}
