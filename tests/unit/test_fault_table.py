"""docs/faults.rst stays true: every test it names exists, every fault test is named."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "faults.rst"


def named_in_docs() -> set[str]:
    return set(re.findall(r"``(tests/faults/[\w/]+\.py::\w+)``", TABLE.read_text()))


def defined_tests() -> set[str]:
    found = set()
    for path in (ROOT / "tests" / "faults").glob("test_*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.add(f"{path.relative_to(ROOT)}::{node.name}")
    return found


def test_every_test_named_in_the_table_exists():
    missing = named_in_docs() - defined_tests()
    assert not missing, f"docs/faults.rst names tests that do not exist: {sorted(missing)}"


def test_every_fault_test_is_in_the_table():
    unlisted = defined_tests() - named_in_docs()
    assert not unlisted, f"fault tests missing from docs/faults.rst: {sorted(unlisted)}"
