"""The README's Python example runs and prints what its comments say."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_prints_what_it_says():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the README has a Python example"
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(block, {})  # noqa: S102 - our own documentation
        promised = re.findall(r"print\(.*?\)\s+#\s*(.+)", block)
        assert out.getvalue().split("\n")[: len(promised)] == [p.strip() for p in promised]
