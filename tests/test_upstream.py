"""Upstream reports: the inlined repro runs on its own and exits 1 while the planted bug reproduces, 0 when not.

The planted bug is tests/wrong_adapter.py (SAME's odd padding pixel put first): a third-party adapter, so the
script reaches it through refconv's generic template. Real framework bugs (TF oneDNN, torch single-channel)
are checked through their direct templates when the framework is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refconv import upstream
from refconv.compare import TOLERANCE_C
from refconv.inputs import make_inputs
from refconv.rows import case_columns
from refconv.spec import ConvSpec

TESTS = Path(__file__).resolve().parent
WRONG = "wrong_adapter:OddPadBeforeConv"
ODD_SAME = "n1-6x6x2-k3x3x2-s2x2-same-f32"  # SAME total 1 on each axis: the wrong adapter pads before
HOSTILE = "```\n~~~ <script>alert('x')</script> | \"\"\" ''' \\ `` $(rm -rf ~) [a](javascript:x) <!-- -->"
PROVENANCE = {"python": "3.11.7", "numpy_version": "2.4.6", "platform": "Linux-test", "refconv_version": "0.1.0",
              "cpu": {"model": "Test CPU", "flags": "sse4_2 avx2 avx512f ht", "logical_cores": 2, "usable_cores": 2},
              "adapters": {"tf": {"version": "2.21.0", "settings": {"TF_ENABLE_ONEDNN_OPTS": "(unset: on)"},
                                  "env": {"OMP_NUM_THREADS": "2", "HOME_DIR": "/secret"}}}}


def _row(case_id: str, adapter: str, outcome: str, **extra: object) -> dict:
    spec = ConvSpec.from_id(case_id)
    return {**case_columns(spec), "adapter": adapter, "adapter_version": "0", "outcome": outcome,
            "known_deviation": "", "error": "", "repro": "", "tolerance_c": TOLERANCE_C[spec.dtype], **extra}


def _problem(label: str, case_id: str = ODD_SAME, **extra: object) -> dict:
    return {"id": f"{label}-mismatch-odd-same", "adapters": [label], "outcome": "mismatch", "minimal_case": case_id,
            "cases": [case_id], "conditions": {"padding": "SAME", "pad_top": 0, "pad_bottom": 1},
            "precision": 1.0, "recall": 0.5, "probes": 24, "known_deviation": None,
            "engines": {label: "mismatch", "numpy": "pass"}, "repro": None, "upstream_report": None, "rows": 3,
            **extra}


def extract_script(markdown: str) -> str:
    """The one ```python fenced block of a report, however many backticks its fence has."""
    m = re.search(r"^(`{3,})python\n(.*?)\n\1$", markdown, flags=re.S | re.M)
    assert m, "no python block"
    return m.group(2) + "\n"


def run_alone(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run a script from an empty folder, with no PYTHONPATH: it must stand on its own."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "repro.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": ""}
    return subprocess.run([sys.executable, "repro.py"], capture_output=True, text=True, env=env, cwd=folder,
                          timeout=300)


@pytest.fixture
def on_path():
    """tests/ on sys.path while the report is written, so the generator can locate wrong_adapter."""
    sys.path.insert(0, str(TESTS))
    yield
    sys.path.remove(str(TESTS))


def test_the_inlined_repro_of_a_planted_bug_exits_1_and_a_correct_engine_0(tmp_path, on_path):
    rows = [_row(ODD_SAME, WRONG, "mismatch", mismatched=18, n_elements=18, max_abs_err=2.5, bound_ratio=3.1e6),
            _row(ODD_SAME, "numpy", "pass", n_elements=18, max_abs_err=0.0, bound_ratio=0.0)]
    path = upstream.write_report(tmp_path, _problem(WRONG), rows, PROVENANCE)
    assert path == tmp_path / "upstream" / f"{WRONG.replace(':', '_')}-mismatch-odd-same.md"
    text = path.read_text()
    script = extract_script(text)
    assert script == path.with_suffix(".py").read_text()  # the same script sits beside the report
    assert "np.load" not in script and "default_rng([0, 1, 6, 6, 2, 2, 3, 3])" in script  # inputs inline, seeded
    proc = run_alone(script, tmp_path / "elsewhere")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REPRODUCED:" in proc.stdout and "also at" in proc.stdout  # a few elements, expected and got
    fixed = upstream.write_report(tmp_path, _problem("numpy"), rows, PROVENANCE)
    proc = run_alone(extract_script(fixed.read_text()), tmp_path / "fixed")
    assert proc.returncode == 0 and "NOT REPRODUCED" in proc.stdout, proc.stdout + proc.stderr


def test_the_report_names_environment_numbers_conditions_and_status(tmp_path, on_path):
    rows = [_row(ODD_SAME, WRONG, "mismatch", mismatched=18, n_elements=18, max_abs_err=2.5, bound_ratio=3.1e6)]
    text = upstream.write_report(tmp_path, _problem(WRONG, present_since="2.16.0 (not in 2.15.1)"), rows,
                                 PROVENANCE).read_text()
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections == ["Environment", "Minimal reproduction", "Expected and actual", "When it happens",
                        "Workaround", "Related"]
    assert "| Python | `3.11.7` |" in text and "| NumPy | `2.4.6` |" in text and "avx512f" in text
    assert "HOME\\_DIR" not in text  # only thread, oneDNN and precision variables are named
    assert "| 18 / 18 | 2.5 | 3.1e+06 | 16 |" in text  # beyond tolerance, max abs err, bound ratio, C
    assert "`padding = SAME and pad_top = 0 and pad_bottom = 1`" in text
    assert 'when = { padding = "SAME", pad_top = 0, pad_bottom = 1 }' in text
    assert "precision 1.00" in text and "recall 0.50" in text and "24 probe case" in text
    assert "Present since 2.16.0 \\(not in 2.15.1\\)" in text or "Present since 2.16.0 (not in 2.15.1)" in text
    assert "NEW: no known deviation" in text


def test_running_the_script_puts_its_exit_status_and_output_in_the_report(tmp_path, on_path):
    rows = [_row(ODD_SAME, WRONG, "mismatch")]
    path = upstream.write_report(tmp_path, _problem(WRONG), rows, PROVENANCE, run=True)
    text = path.read_text()
    assert "exited with status 1: reproduced" in text and "REPRODUCED: 18 / 18 elements" in text
    # A later render without running keeps the remembered result while the script is unchanged.
    again = upstream.write_report(tmp_path, _problem(WRONG), rows, PROVENANCE).read_text()
    assert "exited with status 1: reproduced" in again


def test_hostile_adapter_strings_break_neither_the_markdown_nor_the_script(tmp_path, on_path):
    rows = [_row(ODD_SAME, WRONG, "mismatch", error=HOSTILE, adapter_version=HOSTILE)]
    problem = _problem(WRONG, title=HOSTILE, conditions={"padding": HOSTILE}, present_since=HOSTILE,
                       engines={WRONG: "mismatch", "numpy": HOSTILE})
    text = upstream.write_report(tmp_path, problem, rows, PROVENANCE).read_text()
    script = extract_script(text)
    assert script == (tmp_path / "upstream" / f"{WRONG.replace(':', '_')}-mismatch-odd-same.py").read_text()
    compile(script, "repro.py", "exec")
    outside = re.sub(r"^(`{3,}).*?^\1$", "", text, flags=re.S | re.M)  # the text outside code blocks ...
    outside = re.sub(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", "", outside)  # ... and outside code spans
    assert "<script>" not in outside and "<!--" not in outside.replace("<!-- written by refconv", "")
    assert not re.search(r"(?<!\\)\]\(javascript:", outside)  # brackets escaped: no link is formed
    for line in outside.splitlines():
        if line.startswith("| `"):  # every table row keeps its column count: no unescaped pipe inside a cell
            assert len(re.findall(r"(?<!\\)\|", line)) == 9, line
    proc = run_alone(script, tmp_path / "run")
    assert proc.returncode == 1, proc.stdout + proc.stderr


@pytest.mark.parametrize("case_id", ["n2-3x4x3-k2x2x2-s1x2-valid-f16-r5", "n1-4x4x1-k3x3x2-s1x1-same-f64-nobias",
                                     "n1-4x4x2-k3x3x1-s1x1-same-bf16"])
def test_inline_inputs_are_bit_identical_to_refconvs(case_id):
    spec = ConvSpec.from_id(case_id)
    namespace: dict = {"np": np}
    exec(upstream.inline_loader(spec), namespace)
    x, w, b, bf16 = namespace["load_inputs"]()
    rx, rw, rb = make_inputs(spec)
    if spec.dtype == "bfloat16":  # embedded as bits, handed to the framework as the exact float32 values
        assert bf16 and x.dtype == np.float32
        rx, rw, rb = (None if a is None else a.astype(np.float32) for a in (rx, rw, rb))
    assert x.tobytes() == rx.tobytes() and w.tobytes() == rw.tobytes()
    assert (b is None and rb is None) or b.tobytes() == rb.tobytes()


def test_toggle_and_known_deviation_links(tmp_path):
    case = "n2-2x1x1-k1x2x1-s1x2-same-f32-nobias"
    problem = {"id": "tf_batched", "adapters": ["tf"], "outcome": "mismatch", "minimal_case": case, "cases": [case],
               "conditions": {}, "probes": 0, "known_deviation": "no_such_entry",
               "engines": {"tf": "mismatch", "tf:onednn=off": "pass"}}
    text = upstream.write_report(tmp_path, problem, [_row(case, "tf", "mismatch")], PROVENANCE).read_text()
    assert "TF_ENABLE_ONEDNN_OPTS=0" in text and "checked: it passed the minimal case" in text
    assert "`no_such_entry`" in text and "Not characterized" in text
    assert "tf.nn.conv2d(" in extract_script(text) and "import adapters" not in extract_script(text)


def test_markdown_helpers():
    assert upstream.fence("a\n````\nb").startswith("`````\n")
    assert upstream.code_span("`x`") == "`` `x` ``"
    assert upstream.md_text("<b>*x*</b>\nnext") == "&lt;b&gt;\\*x\\*&lt;/b&gt; next"
    assert upstream.md_link("x", "javascript:alert(1)") == "`javascript:alert(1)`"
    assert upstream.md_link("r", "upstream/a.md") == "[r](upstream/a.md)"
    words = upstream.conditions_words({"h": {"min": 2, "max": 4}, "sh": {"min": 1, "max": 1}})
    assert words == "2 <= h <= 4 and sh = 1"
    assert upstream.toml_inline({"a b": [1, "x\"y"], "ok": True}) == '{ "a b" = [1, "x\\"y"], ok = true }'


# The recorded real bugs, each through its direct template: NumPy and the framework only.
REAL = [("tf", "tensorflow", "n2-2x1x1-k1x2x1-s1x2-same-f32-nobias"),
        ("torch", "torch", "n1-5x2x1-k4x4x2-s1x3-same-f32-d2x1-r278"),
        ("keras", "keras", "n1-4x4x1-k1x1x4-s1x1-same-f32-nchw")]  # channels_first bias added on the width


@pytest.mark.slow  # a framework import in a fresh process: 10-30 s on a loaded 2-core machine
@pytest.mark.parametrize(("label", "module", "case_id"), REAL, ids=[r[0] for r in REAL])
def test_real_framework_bug_reports_reproduce(tmp_path, label, module, case_id):
    """Each report's script reproduces where its entry's kernels run here, and says 'not this CPU' elsewhere."""
    pytest.importorskip(module, reason=f"{module} is not installed")
    from refconv import deviations, hardware
    from refconv.rows import case_columns

    row = {**case_columns(ConvSpec.from_id(case_id)), "adapter": label, "outcome": "mismatch"}
    entry = next(d for d in deviations.load() if d.covers(label) and d.applies_case(row)
                 and "mismatch" in d.outcomes and not d.model.startswith("flush"))
    problem = {"id": f"{label}-real", "adapters": [label], "outcome": "mismatch", "minimal_case": case_id,
               "cases": [case_id], "engines": {label: "mismatch"}, "known_deviation": entry.id}
    script = extract_script(upstream.write_report(tmp_path, problem, [], {}).read_text())
    assert "import adapters" not in script and "from refconv" not in script and "sys.path" not in script
    proc = run_alone(script, tmp_path / "alone")
    # oneDNN's level here as the frameworks run it (ONEDNN_MAX_CPU_ISA; TF_ENABLE_ONEDNN_OPTS for tf)
    tf_off = label == "tf" and not hardware.tf_onednn_expected()
    here = "eigen" if tf_off else hardware.onednn_isa(hardware.onednn_level_in_force())
    if entry.hardware_holds(here, hardware.cpu_features()):
        assert proc.returncode == 1 and "REPRODUCED" in proc.stdout, proc.stdout + proc.stderr
    else:
        assert proc.returncode == 3 and "not reproducible on this CPU" in proc.stdout, proc.stdout + proc.stderr


def test_onnxruntime_report_calls_onnxruntime_directly_and_reproduces_the_shifted_windows(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    for case_id, status in (("n1-4x4x1-k1x1x1-s4x2-same-f16", 1), ("n1-6x6x2-k3x3x2-s2x2-same-f32", 0)):
        problem = {"id": case_id, "adapters": ["onnxruntime"], "outcome": "mismatch", "minimal_case": case_id,
                   "cases": [case_id]}
        script = extract_script(upstream.write_report(tmp_path, problem, [], {}).read_text())
        assert "import onnxruntime as ort" in script and "import adapters" not in script
        proc = run_alone(script, tmp_path / case_id)
        assert proc.returncode == status, proc.stdout + proc.stderr


def test_a_known_deviations_toggle_witness_is_the_workaround(tmp_path):
    from refconv import deviations

    entry = next((d for d in deviations.load() if d.id.startswith("torch") and getattr(d, "toggle", "")), None)
    if entry is None:
        pytest.skip("no torch known deviation carries a toggle witness")
    case = entry.example
    problem = {"id": entry.id, "adapters": ["torch"], "outcome": "mismatch", "minimal_case": case, "cases": [case],
               "known_deviation": entry.id, "engines": {"torch": "mismatch"}}
    text = upstream.write_report(tmp_path, problem, [], {}).read_text()
    workaround = text[text.index("## Workaround"):text.index("## Related")]
    assert f"`torch:{entry.toggle}`" in workaround and "from the known deviation's witness" in workaround
    if entry.toggle == "mkldnn=off":
        assert "torch.backends.mkldnn.flags(enabled=False)" in workaround
    assert entry.upstream in text[text.index("## Related"):]


# --- hardware: the CPU, the kernels, what a machine needs, and the settings that avoid oneDNN's bugs ------------


def test_the_report_states_the_cpu_the_kernels_and_the_settings_that_avoid_them(tmp_path):
    features = "x86-64-v4 avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx"
    hw = {"cpu_model": "Intel Xeon 8480+", "cpu_features": features}
    rows = [_row(ODD_SAME, "tf", "mismatch", isa="onednn:avx512_core_amx", mismatched=2, n_elements=18, **hw),
            _row(ODD_SAME, "tf:isa=avx2", "pass", isa="onednn:avx2", n_elements=18, **hw),
            _row(ODD_SAME, "tf:onednn=off", "pass", isa="eigen", n_elements=18, **hw)]
    problem = _problem("tf", engines={"tf": "mismatch", "tf:isa=avx2": "pass", "tf:onednn=off": "pass"})
    text = upstream.write_report(tmp_path, problem, rows, PROVENANCE).read_text()
    environment = text[text.index("## Environment"):text.index("## Minimal reproduction")]
    assert f"| CPU features (refconv) | `{features}` |" in environment
    assert "| kernels the failing row ran (isa) | `onednn:avx512_core_amx` |" in environment
    assert "| `tf:isa=avx2` | pass | `onednn:avx2` |" in text  # each engine's kernels on the minimal case
    when = text[text.index("## When it happens"):text.index("## Workaround")]
    assert "Seen with the kernels `onednn:avx512_core_amx`" in when and "not reproducible on this CPU" in when
    workaround = text[text.index("## Workaround"):text.index("## Related")]
    assert "`tf:isa=avx2`: set the environment variable `ONEDNN_MAX_CPU_ISA=AVX2`" in workaround  # seen to pass
    assert "`tf:onednn=off`: set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`" in workaround
    assert workaround.count("ONEDNN_OPTS") + workaround.count("ONEDNN\\_OPTS") == 1  # said once
    assert workaround.count("MAX_CPU_ISA") + workaround.count("MAX\\_CPU\\_ISA") == 1
    script = extract_script(text)
    assert "SEEN_ISA = 'onednn:avx512_core_amx'" in script and "import adapters" not in script
    assert "3: the output agrees but this machine does not run the kernels" in text
    compile(script, "repro.py", "exec")
