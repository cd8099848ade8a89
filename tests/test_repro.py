"""Repro scripts: their plain-NumPy reference agrees with refconv's, inputs round-trip, findings reproduce."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refconv import cases, repro
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
