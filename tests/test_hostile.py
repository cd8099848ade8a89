"""Hostile strings from third-party adapters reach every output escaped, and generated Python holds them as literals.

Also: a metamorphic relation gives a verdict whatever shape an adapter returns, and a result in another
dtype is a finding (tests/hostile_adapters.py holds the misbehaving adapters).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hostile_adapters import HOSTILE, PWNED, WrongDtype, WrongShape

from refconv import metamorphic, repro
from refconv.cli import main as cli
from refconv.spec import ConvSpec

ROOT = Path(__file__).resolve().parent.parent
CASE = "n1-4x4x1-k2x2x1-s2x2-same-f32"
# an option value from the command line lands in the adapter label (anything but ':' goes)
LABEL_TAG = '</script>{}"\'"""x'
ADAPTERS = [f"hostile_adapters:Hostile:tag={LABEL_TAG}", "hostile_adapters:HostileWrong"]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "run"
    code = cli(["run", "--cases", CASE, "--adapters", ",".join(ADAPTERS), "--no-isolation", "--no-progress",
                "--repeats", "0", "--out", str(out)])
    assert code == 0
    return out


def test_tables_hold_the_strings_readably(hostile_run: Path) -> None:
    for frame in (pd.read_csv(hostile_run / "results.csv", keep_default_na=False),
                  pd.read_parquet(hostile_run / "results.parquet")):
        if "relation" in frame.columns:  # metamorphic relation rows ride along; the conv rows are the ones here
            frame = frame[frame["relation"].fillna("") == ""]
        assert len(frame) == 2
        raised = frame[frame["outcome"] == "raised"].iloc[0]
        assert "</script>" in raised["error"] and '"""' in raised["error"]  # kept, as data
        assert raised["adapter"].endswith(LABEL_TAG)
        assert "\\udcff" in raised["adapter_version"]  # bytes that are not UTF-8 show as escapes
        settings = json.loads(raised["settings"])
        assert any("</script>" in key and "\\udcff" in key for key in settings)
    for line in (hostile_run / "rows.jsonl").read_text(encoding="utf-8").splitlines():
        json.loads(line)


def test_html_report_escapes_everything(hostile_run: Path) -> None:
    page = (hostile_run / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "&lt;/script&gt;" in page


def test_markdown_summary_escapes_html_and_keeps_table_rows_whole(hostile_run: Path) -> None:
    md = (hostile_run / "summary.md").read_text(encoding="utf-8")
    outside_code = re.sub(r"(`+)(.+?)\1", "", md)  # a code span shows its text literally: HTML there is inert
    assert "<script" not in outside_code.lower() and "</script" not in outside_code.lower()
    assert "&lt;/script&gt;" in md
    assert "\x1b" not in md and "\r" not in md


def test_generated_repro_runs_and_embeds_strings_only_as_literals(hostile_run: Path, tmp_path: Path) -> None:
    scripts = sorted((hostile_run / "repro").glob("*.py"))
    assert len(scripts) == 2
    for script in scripts:
        source = script.read_text(encoding="utf-8")
        tree = ast.parse(source)  # compiles: nothing broke out of a string
        label = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "LABEL")
        assert ast.literal_eval(label) in ADAPTERS
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}  # the adapter: tests/
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, timeout=120)
        # the engine's own message, printed by the script as the engine raised it, may hold any bytes
        stdout = done.stdout.decode("utf-8", "backslashreplace")
        assert done.returncode == 1, done.stderr.decode("utf-8", "backslashreplace")  # the finding reproduces
        assert "REPRODUCED" in stdout
        assert not (tmp_path / PWNED).exists()


def test_repro_script_of_a_hostile_label_and_message_is_literal() -> None:
    spec = ConvSpec.from_id(CASE)
    label = f'pkg.mod:Cls:tag={HOSTILE.replace(":", "")}'
    message = f"{label}: raised: {HOSTILE}"
    source = repro.script(spec, label, message)
    tree = ast.parse(source)
    assigned = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign)
                and isinstance(n.targets[0], ast.Name)}
    assert ast.literal_eval(assigned["LABEL"]) == label
    assert "\udcff" not in source  # the file stays valid UTF-8
    doc = ast.get_docstring(tree) or ""
    assert "raised" in doc and "import os" in doc  # the message is shown, inside the docstring


def test_relation_on_an_adapter_returning_the_wrong_shape_is_broken_with_the_reason() -> None:
    spec = ConvSpec(n=2, h=5, w=5, c_in=2, c_out=2, kh=3, kw=3, strides=2, dilations=1, groups=2)
    conv = metamorphic.adapter_conv(WrongShape())
    for name in metamorphic.RELATIONS:
        result = metamorphic.check(name, conv, spec)
        if result.skipped:
            continue
        assert not result.ok and "shape" in result.detail, result.message()


def test_relation_on_an_adapter_returning_nonsense_is_broken() -> None:
    spec = ConvSpec(n=1, h=4, w=4, c_in=1, c_out=1, kh=3, kw=3)

    def strings(x, w, b, s):  # type: ignore[no-untyped-def]
        return [["not", "numbers"]]

    result = metamorphic.check("linearity_x", strings, spec)
    assert not result.ok and "not numeric" in result.detail


def test_an_adapter_returning_float64_for_float32_is_a_wrong_dtype_finding(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli(["run", "--cases", CASE, "--adapters", "hostile_adapters:WrongDtype", "--no-isolation",
                "--no-progress", "--repeats", "0", "--out", str(out)]) == 0
    row = pd.read_csv(out / "results.csv", keep_default_na=False).iloc[0]
    assert row["outcome"] == "wrong_dtype" and row["actual_dtype"] == "float64"
    assert (out / row["repro"]).is_file()
    assert WrongDtype.name == "wrong-dtype"
    # the repro script checks the dtype as the comparison does, so it reproduces the finding (exit 1)
    proc = subprocess.run([sys.executable, str(out / row["repro"])], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REPRODUCED: hostile_adapters:WrongDtype returned float64, expected float32" in proc.stdout


def test_upstream_reports_escape_everything(hostile_run: Path) -> None:
    reports = sorted((hostile_run / "upstream").glob("*.md"))
    assert reports, "the run's findings should have upstream reports"
    for report in reports:
        text = report.read_text(encoding="utf-8")
        prose = re.sub(r"^(`{3,}|~{3,}).*?^\1", "", text, flags=re.DOTALL | re.MULTILINE)  # fenced code: literal
        prose = re.sub(r"(`+)(.+?)\1", "", prose)  # code spans: literal
        assert "<script" not in prose.lower() and "</script" not in prose.lower(), report.name
        assert "\x1b" not in text and "\r" not in text
    for script in (hostile_run / "upstream").glob("*.py"):
        ast.parse(script.read_text(encoding="utf-8"))
