"""The second-seed pass (``-m trained_model``) imports only the test modules whose text names the
mark (``tests/conftest.py`` ``pytest_ignore_collect``). That loses no test only while the mark is
applied in test modules themselves: no helper module or conftest may apply it elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import TRAINED_MODEL_MARK

TESTS = Path(__file__).resolve().parent


def _mark_uses(tree: ast.AST) -> list[int]:
    """Lines that apply the mark: ``pytest.mark.trained_model``, or ``add_marker`` given the
    mark's name in any form."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == TRAINED_MODEL_MARK:
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_marker":
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            words = {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)}
            if "TRAINED_MODEL_MARK" in names or TRAINED_MODEL_MARK in words:
                lines.append(node.lineno)
    return lines


def test_the_trained_model_mark_is_applied_only_in_test_modules():
    helpers = [p for p in TESTS.rglob("*.py") if not p.name.startswith("test_")]
    assert TESTS / "conftest.py" in helpers and len(helpers) > 5
    applied = {str(p.relative_to(TESTS)): lines for p in helpers if (lines := _mark_uses(ast.parse(p.read_bytes())))}
    assert applied == {}


def test_the_checker_sees_a_mark_applied_by_a_helper():
    decorated = ast.parse("import pytest\nTRAINED = pytest.mark.trained_model\n")
    hooked = ast.parse("def hook(item):\n    item.add_marker(TRAINED_MODEL_MARK)\n")
    assert _mark_uses(decorated) == [2] and _mark_uses(hooked) == [2]
    assert _mark_uses(ast.parse("item.add_marker(pytest.mark.needs_services)\n")) == []
