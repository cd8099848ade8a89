"""Start-up: `import refconv` and building the CLI parser load no ML framework; `python -m refconv --help` works.

Each check runs in a fresh interpreter, since this test process may already hold frameworks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("tensorflow", "torch", "jax", "jaxlib", "onnx", "onnxruntime", "keras", "tf_keras")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120, check=False)


def _loaded_after(statements: str) -> set[str]:
    code = f"{statements}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = _python(code)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_import_refconv_loads_no_framework() -> None:
    loaded = _loaded_after("import refconv")
    assert not loaded & set(FRAMEWORKS), f"import refconv loaded {sorted(loaded & set(FRAMEWORKS))}"
    assert "pandas" not in loaded, "the core imports pandas; it belongs in refconv.report"


def test_building_the_cli_parser_loads_no_framework() -> None:
    loaded = _loaded_after("import refconv.cli\nrefconv.cli.build_parser()")
    assert not loaded & set(FRAMEWORKS), f"build_parser loaded {sorted(loaded & set(FRAMEWORKS))}"


def test_module_help_works() -> None:
    done = subprocess.run([sys.executable, "-m", "refconv", "--help"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: refconv")
    for command in ("run", "cases"):
        assert command in done.stdout
