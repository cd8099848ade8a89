"""docs/tutorial.md's python snippets run, in order, in one namespace; the tutorial modules' doctests pass."""

import doctest
import importlib
import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets() -> list[str]:
    return SNIPPET.findall(TUTORIAL.read_text())


def test_the_tutorial_has_snippets_and_the_figure():
    text = TUTORIAL.read_text()
    assert len(snippets()) >= 10
    assert "](images/demo.png)" in text
    assert (TUTORIAL.parent / "images" / "demo.png").is_file()


def test_tutorial_snippets_run():
    namespace: dict = {"__name__": "tutorial_md"}
    for i, code in enumerate(snippets()):
        try:
            exec(compile(code, f"{TUTORIAL.name}[snippet {i}]", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"docs/tutorial.md snippet {i} failed: {type(exc).__name__}: {exc}\n{code}") from exc


@pytest.mark.parametrize(
    "module", ["refconv.tutorial", "refconv.locally_connected", "refconv.params", "refconv.explain"]
)
def test_module_doctests(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
