"""Repro scripts: their plain-NumPy reference agrees with refconv's, inputs round-trip, findings reproduce."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refconv import cases, hardware, repro, repro_hardware
from refconv.inputs import make_inputs
from refconv.reference import for_spec
from refconv.spec import ConvSpec

TESTS = Path(__file__).resolve().parent


def script_namespace(spec: ConvSpec, label: str = "numpy") -> dict:
    namespace: dict = {"__name__": "repro_under_test", "__file__": "/nonexistent/x.py"}
    exec(compile(repro.script(spec, label, "test finding"), "<repro>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("spec", cases.select("edge,random:60", seed=11), ids=lambda s: s.id)
def test_script_reference_matches_refconv(spec):
    ns = script_namespace(spec)
    x, w, b = make_inputs(spec)
    expected, bound = for_spec(spec, x, w, b)
    plain = [None if a is None else np.asarray(a, dtype=np.float64) for a in (x, w, b)]
    got = ns["reference"](*plain)
    if spec.activation == "relu":
        got = np.maximum(got, 0)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * float(bound.max(initial=1.0)))
    got_bound = ns["reference"](*[None if a is None else np.abs(a) for a in plain])
    np.testing.assert_allclose(got_bound, bound, rtol=1e-12)


def test_bfloat16_inputs_round_trip_through_uint16_bits(tmp_path):
    spec = ConvSpec(n=1, h=4, w=4, c_in=2, c_out=3, kh=3, kw=3, dtype="bfloat16")
    x, w, b = make_inputs(spec)
    path = repro.write(tmp_path, spec, "numpy", "m", x, w, b)
    data = np.load(tmp_path / "repro" / f"{spec.id}.npz")
    assert data["x"].dtype == np.uint16 and bool(data["bfloat16"]) and bool(data["has_bias"])
    ns = script_namespace(spec)
    ns["HERE"] = str(tmp_path / "repro")
    lx, lw, lb, bf16 = ns["load_inputs"]()
    assert bf16 and lx.dtype == np.float32
    np.testing.assert_array_equal(lx, x.astype(np.float32))
    np.testing.assert_array_equal(lb, b.astype(np.float32))
    assert path == f"repro/{spec.id}__numpy.py"


def test_safe_name():
    assert repro.safe_name("tf:onednn=off") == "tf_onednn=off"
    assert repro.safe_name("pkg.mod:Cls:mode=a/b") == "pkg.mod_Cls_mode=a_b"


def run_script(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ""}  # the script must find refconv and the adapter on its own
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, cwd=path.parent.parent)


def test_generated_script_reproduces_a_mismatch_and_passes_a_correct_adapter(tmp_path):
    spec = ConvSpec.from_id("n1-6x6x2-k3x3x2-s2x2-same-f32-g2-relu")
    x, w, b = make_inputs(spec)
    sys.path.insert(0, str(TESTS))  # so the generator can locate fake_adapters for the script's sys.path
    try:
        wrong = repro.write(tmp_path, spec, "fake_adapters:Faulty:mode=wrong", "1 element off", x, w, b)
        right = repro.write(tmp_path, spec, "numpy", "no finding", x, w, b)
    finally:
        sys.path.remove(str(TESTS))
    proc = run_script(tmp_path / wrong)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REPRODUCED: 1 / 18 elements beyond tolerance; worst at (0, 0, 0, 0)" in proc.stdout
    proc = run_script(tmp_path / right)
    assert proc.returncode == 0 and "NOT REPRODUCED" in proc.stdout, proc.stdout + proc.stderr


def test_tf_template_agrees_with_the_tf_adapter(tmp_path):
    pytest.importorskip("tensorflow", reason="tensorflow is not installed")
    from refconv import runner

    spec = ConvSpec.from_id("n1-2x2x2-k3x3x2-s1x1-valid-f32")  # input one pixel short of the kernel: empty output
    x, w, b = make_inputs(spec)
    path = repro.write(tmp_path, spec, "tf", "finding", x, w, b)
    assert "tf.nn.conv2d(tx, tensor(w), strides=[1, 1, 1, 1], padding='VALID'" in (tmp_path / path).read_text()
    try:
        _, _, (answer,) = runner.evaluate(spec, ["tf"], runner.pool_for(["tf"]), repeats=0)
    finally:
        runner.close_pools()
    proc = run_script(tmp_path / path)
    if answer.comparison.outcome == "pass":
        assert proc.returncode == 0 and "NOT REPRODUCED" in proc.stdout, proc.stdout + proc.stderr
    else:  # the script sees what the adapter saw
        assert proc.returncode == 1 and "REPRODUCED: tf" in proc.stdout, proc.stdout + proc.stderr
        if answer.comparison.outcome == "wrong_shape":
            assert f"returned shape {answer.comparison.actual_shape}" in proc.stdout


# --- hardware: the script records where the finding was seen and says when this CPU cannot show it ------------

SPEC = ConvSpec.from_id("n1-6x6x2-k3x3x2-s2x2-same-f32")
SPR = "x86-64-v4 avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx"
AVX2_ONLY = "sse2 ssse3 sse4_1 sse4_2 popcnt cx16 lahf_lm avx avx2 fma bmi1 bmi2 f16c movbe abm"


class AmxFp16Deviation:
    """A known deviation's hardware side only: it shows on oneDNN's AMX-FP16 kernels (a flag this CPU may lack)."""

    id = "amx_fp16_only"
    hardware = {"onednn_isa": ["avx512_core_amx_fp16"]}

    def describe_hardware(self) -> str:
        return "onednn_isa in avx512_core_amx_fp16"


def run_with(path: Path, **env: str) -> subprocess.CompletedProcess:
    """run_script with extra environment variables (REFCONV_REPRO_CPU_FLAGS, ONEDNN_MAX_CPU_ISA)."""
    full = {**os.environ, "PYTHONPATH": "", **env}
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=full, cwd=path.parent,
                          timeout=300)


def test_the_script_states_the_cpu_the_kernels_and_what_avoids_the_bug():
    row = {"isa": "onednn:avx512_core_amx", "cpu_model": "Intel Xeon 8480+", "cpu_features": SPR}
    where = repro_hardware.seen("tf", row, passing_levels=["avx2", "avx512_core"])
    text = repro.script(SPEC, "tf", "m", where=where)
    doc = text.split('"""')[1]
    assert f"CPU: Intel Xeon 8480+ ({SPR})" in doc and "kernels (isa): onednn:avx512_core_amx" in doc
    assert "ONEDNN_MAX_CPU_ISA=AVX512_CORE before" in doc  # the highest level seen to pass
    assert "TF_ENABLE_ONEDNN_OPTS=0" in doc and "3 not reproducible on this CPU" in doc
    assert "SEEN_ISA = 'onednn:avx512_core_amx'" in text and "NEEDS = {'isa': 'onednn:avx512_core_amx'}" in text
    assert "import refconv" not in text and "from refconv" not in text and "import adapters" not in text  # standalone
    torch_text = repro.script(SPEC, "torch", "m", where=repro_hardware.seen("torch", row))
    assert "torch.backends.mkldnn.enabled = False (PyTorch's own kernels" in torch_text


def test_a_row_without_hardware_columns_records_no_condition():
    where = repro_hardware.seen("tf", {"isa": float("nan"), "cpu_features": ""})
    assert where.needs == {} and where.avoid == () and where.lines() == []


@pytest.mark.parametrize("cap", ["", "AVX2", "avx512_core", "AVX2_VNNI", "avx10_1_512", "all"])
def test_the_scripts_onednn_level_agrees_with_refconv_hardware(cap, monkeypatch):
    ns = script_namespace(SPEC)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    for flags in (set(AVX2_ONLY.split()), set(hardware.ONEDNN_LEVELS["avx512_core_amx"]) | {"sse4_1", "avx"}):
        assert ns["onednn_level"](flags) == hardware.onednn_level_in_force(flags=flags)
        assert ns["cpu_features"](flags) == hardware.describe_features(flags)


def test_a_script_run_where_its_kernels_cannot_run_is_not_reproducible_here_exit_3(tmp_path):
    x, w, b = make_inputs(SPEC)
    row = {"isa": "openblas:SapphireRapids", "cpu_model": "Intel Xeon 8480+", "cpu_features": SPR}
    path = tmp_path / repro.write(tmp_path, SPEC, "numpy", "seen on AVX-512", x, w, b, row=row)
    proc = run_with(path, REFCONV_REPRO_CPU_FLAGS=AVX2_ONLY)  # a stand-in CPU without AVX-512
    assert proc.returncode == repro_hardware.EXIT_NOT_THIS_CPU == 3, proc.stdout + proc.stderr
    assert "not reproducible on this CPU (needs the kernels openblas:SapphireRapids" in proc.stdout
    assert "x86-64-v3 avx2 fma" in proc.stdout and "NOT REPRODUCED" not in proc.stdout


def test_a_script_on_the_cpu_it_was_seen_on_still_says_fixed_exit_0(tmp_path):
    x, w, b = make_inputs(SPEC)
    row = {"isa": "", "cpu_features": hardware.cpu_features()}  # the kernels not recorded: no condition
    path = tmp_path / repro.write(tmp_path, SPEC, "numpy", "m", x, w, b, row=row)
    proc = run_with(path, REFCONV_REPRO_CPU_FLAGS=AVX2_ONLY)
    assert proc.returncode == 0 and "NOT REPRODUCED" in proc.stdout, proc.stdout + proc.stderr


def test_a_deviation_needing_amx_fp16_is_not_reproducible_without_it_and_judged_with_it(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed")
    where = repro_hardware.seen("torch", {"isa": "onednn:avx512_core_amx_fp16", "cpu_features": SPR},
                       deviation=AmxFp16Deviation())
    assert where.needs == {"onednn_isa": ["avx512_core_amx_fp16"]}
    path = tmp_path / "repro.py"
    x, w, b = make_inputs(SPEC)
    repro.save_inputs(tmp_path / f"{SPEC.id}.npz", x, w, b)
    path.write_text(repro.script(SPEC, "torch", "m", where=where))
    amx = " ".join(["sse4_1 avx avx2 fma", *hardware.ONEDNN_LEVELS["avx512_core_amx"]])
    uncapped = {"ONEDNN_MAX_CPU_ISA": "", "DNNL_MAX_CPU_ISA": ""}  # the planted CPU alone decides (tox -e avx2 caps)
    proc = run_with(path, REFCONV_REPRO_CPU_FLAGS=amx, **uncapped)  # AMX without FP16: oneDNN's avx512_core_amx
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "not reproducible on this CPU (needs onednn_isa in avx512_core_amx_fp16 (known deviation amx_fp16_only))" \
        in proc.stdout and "here: kernels onednn:avx512_core_amx" in proc.stdout
    proc = run_with(path, REFCONV_REPRO_CPU_FLAGS=amx + " amx_fp16", **uncapped)  # with it: a correct torch is a fix
    assert proc.returncode == 0 and "NOT REPRODUCED" in proc.stdout, proc.stdout + proc.stderr


def test_training_op_scripts_carry_the_same_record_and_check(tmp_path):
    from refconv import grad_repro

    spec = dataclasses.replace(SPEC, op="grad_input")
    where = repro_hardware.seen("torch", {"isa": "onednn:avx2", "cpu_features": SPR})
    text = grad_repro.script(spec, "torch", "m", "x.py", "x.npz", where)
    compile(text, "grad_repro", "exec")
    assert "SEEN_ISA = 'onednn:avx2'" in text and "not_this_cpu()" in text and "kernels (isa): onednn:avx2" in text


def test_passing_levels_are_the_engines_onednn_levels_that_passed_the_case():
    rows = [{"adapter": "tf", "outcome": "mismatch", "isa": "onednn:avx512_core_amx"},
            {"adapter": "tf:isa=avx2", "outcome": "pass", "isa": "onednn:avx2"},
            {"adapter": "tf:onednn=off", "outcome": "pass", "isa": "eigen"},
            {"adapter": "torch", "outcome": "pass", "isa": "onednn:avx512_core"}]
    assert repro_hardware.passing_levels(rows, "tf") == ["avx2"]
