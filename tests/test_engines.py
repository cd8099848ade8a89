"""Every available engine against the float64 reference, strictly, on the edge corpus and random cases.

A case an adapter declines through supports() is skipped with its reason; an adapter whose framework
is missing is skipped with the registry's reason. A failure that is a known (or proposed) framework
deviation is marked xfail with the deviation id; anything else fails with compare's message.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import pytest

import adapters
from refconv import deviations
from refconv.cases import edge_cases, random_cases
from refconv.compare import Comparison, compare
from refconv.inputs import make_inputs
from refconv.padding import effective_kernel, geometry
from refconv.reference import for_spec
from refconv.rows import case_columns
from refconv.spec import ConvSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# tf:onednn=off is left out: TensorFlow reads TF_ENABLE_ONEDNN_OPTS at import, so it needs its own
# process (test_tf_onednn_off_in_own_process below); jax:precision=default equals plain jax on CPU.
ENGINES = (*adapters.CPU, "torch:layout=channels_last", "torch:threads=1", "jax:precision=highest",
           "onnxruntime:opt=disable", *adapters.GPU, "torch-cuda:tf32=off", "jax-gpu:precision=highest")
RANDOM_COUNT, RANDOM_SEED = 16, 7
# Literal cases beside the corpus, named for what they pin down (each found by a wider random sweep).
FOUND = [
    ConvSpec(name="same_stride_leaves_3_pixels", n=1, h=4, w=4, c_in=1, c_out=1, kh=1, kw=1, strides=(4, 2)),
    ConvSpec(name="same_stride_leaves_2_pixels_3x3", n=1, h=5, w=5, c_in=2, c_out=2, kh=1, kw=1, strides=(4, 4)),
    ConvSpec(name="nchw_bias_filters_equal_width", n=1, h=4, w=4, c_in=1, c_out=4, kh=1, kw=1, layout="NCHW"),
    ConvSpec(name="nchw_bias_filters_equal_width_3x5", n=1, h=3, w=5, c_in=2, c_out=5, kh=3, kw=3, layout="NCHW"),
    ConvSpec(name="nchw_filters_equal_width_no_bias", n=1, h=4, w=4, c_in=1, c_out=4, kh=1, kw=1, layout="NCHW",
             bias=False),
    ConvSpec(name="empty_short_by_two_explicit", n=1, h=3, w=3, c_in=2, c_out=2, kh=5, kw=1, padding=((0, 0), (0, 0))),
]
CASES = edge_cases() + FOUND + random_cases(RANDOM_COUNT, RANDOM_SEED)

# Deviations these tests found in the new engines, proposed for refconv/data/known_deviations.toml in its
# own format (the lead reviews and moves them there); the shipped entries are consulted first.
PROPOSED_TOML = """
[onnxruntime_empty_output_raises]
adapter = ["onnxruntime", "onnxruntime:*"]
outcomes = ["raised"]
when = { empty_output = true }
example = "n1-2x2x2-k3x3x2-s1x1-valid-f32"
reason = "ONNX Runtime's CPU Conv raises INVALID_ARGUMENT 'Invalid input shape: {2,2}' when the padded input is smaller than the effective kernel, where the right answer is an empty output."
upstream = "TODO"

[keras_empty_output_raises]
adapter = ["keras", "keras:*"]
outcomes = ["raised"]
when = { empty_output = true }
example = "n1-2x2x2-k3x3x2-s1x1-valid-f32"
reason = "keras.layers.Conv2D raises ValueError 'Computed output size would be zero or negative' when the layer is built on an input smaller than the effective kernel, where the right answer is an empty output."
upstream = "TODO"

[torch_nn_empty_output_raises]
adapter = ["torch-nn", "torch-nn:*", "torch-cuda", "torch-cuda:*"]
outcomes = ["raised"]
when = { empty_output = true }
example = "n1-2x2x2-k3x3x2-s1x1-valid-f32"
reason = "torch.nn.Conv2d (and F.conv2d on CUDA) raise 'Kernel size can't be greater than actual input size', as torch_empty_output_raises; listed apart because that entry names only the torch labels."
upstream = "https://github.com/pytorch/pytorch/issues/17247"

[onnx_ref_empty_output_raises]
adapter = ["onnx-ref"]
outcomes = ["raised"]
# im2col sizes an axis as (in + pads - k_eff) // s + 1 (floor), negative once the padded input is short of
# the kernel by more than one stride; short_over_stride = max over axes of (short - stride), see facts().
when = { empty_output = true, short_over_stride = { min = 1 } }
example = "n2-2x3x2-k7x7x3-s1x1-valid-f32"
reason = "onnx.reference's Conv raises ValueError 'negative dimensions are not allowed' when the padded input is short of the effective kernel by more than one stride on an axis (its output size is floor((in + pads - k_eff) / s) + 1, negative there), where the right answer is an empty output; short by at most one stride it returns the right empty output."
upstream = "TODO"

[onnxruntime_same_negative_pad_shifts_windows]
adapter = ["onnxruntime", "onnxruntime:*"]
outcomes = ["mismatch"]
# same_slack: pixels left over on an axis by SAME with stride > kernel (in - (out - 1) * s - k_eff); see below.
when = { padding = "SAME", same_slack = { min = 2 } }
example = "n1-4x4x1-k1x1x1-s4x2-same-f16"
reason = "ONNX Runtime computes SAME_UPPER's pad as (out - 1) * s + k_eff - in without clamping at 0; when the stride leaves 2 or more pixels unused, pad_head becomes negative and every window is shifted (wrong values, right shape). The ONNX reference evaluator, TF and PyTorch give the right answer."
upstream = "https://github.com/microsoft/onnxruntime/issues/10086"

[keras_channels_first_bias_on_width]
adapter = ["keras", "keras:*"]
outcomes = ["mismatch"]
# c_out_is_out_w: the layer's filter count equals the output width (computed in this file, see facts()).
when = { layout = "NCHW", bias = true, c_out_is_out_w = true }
example = "n1-4x4x1-k1x1x4-s1x1-same-f32-nchw"
reason = "keras.layers.Conv2D(data_format='channels_first') adds its bias along the width axis when the number of filters equals the output width: the TensorFlow backend's keras.ops.add turns x + reshape(b, (1, C, 1, 1)) into tf.nn.bias_add and guesses data_format NHWC because x.shape[-1] == C."
upstream = "https://github.com/keras-team/keras/pull/20386 (introduced the bias_add rewrite; no issue found)"
"""  # noqa: E501 - TOML entries to paste into known_deviations.toml, whose reasons are one line each
ENTRIES = (*deviations.load(), *deviations.parse(PROPOSED_TOML))


@functools.cache
def _engine(label: str) -> Any:
    """The adapter for a label, loaded once per test process; skips with the reason when it cannot run."""
    reason = adapters.unavailable_reason(label)
    if reason:
        return reason
    return adapters.load(label)


def engine(label: str) -> Any:
    found = _engine(label)
    if isinstance(found, str):
        pytest.skip(f"{label}: {found}")
    return found


def run_case(adapter: Any, spec: ConvSpec) -> Comparison:
    """The adapter's output on the spec's seeded inputs, compared with the reference."""
    x, w, b = make_inputs(spec)
    expected, bound = for_spec(spec, x, w, b)
    try:
        actual = adapter.conv2d(x, w, b, spec)
    except Exception as exc:  # noqa: BLE001 - any framework error is the outcome 'raised'
        first = (str(exc).strip().splitlines() or [""])[0]
        return Comparison("raised", tuple(expected.shape), None, n_elements=expected.size,
                          error=f"{type(exc).__name__}: {first}")
    return compare(spec, expected, bound, actual)


def facts(spec: ConvSpec) -> dict[str, Any]:
    """Derived facts the proposed entries need, beyond refconv.deviations.derived (proposed for it too)."""
    rows, cols = geometry(spec)
    axes = [(spec.h, rows, spec.strides[0], effective_kernel(spec.kh, spec.dilations[0])),
            (spec.w, cols, spec.strides[1], effective_kernel(spec.kw, spec.dilations[1]))]
    slack = [size - (ax.out - 1) * s - k for size, ax, s, k in axes]
    short = [k - (size + ax.before + ax.after) - s for size, ax, s, k in axes]
    return {"same_slack": max(slack) if spec.padding == "SAME" else 0, "short_over_stride": max(short),
            "c_out_is_out_w": spec.c_out > 1 and spec.c_out == cols.out}


def predicted(label: str, spec: ConvSpec) -> deviations.Deviation | None:
    """The known or proposed deviation that predicts this adapter misbehaves on this case, or None."""
    return deviations.expected_for(label, {**case_columns(spec), **facts(spec), "adapter": label}, ENTRIES)


def check(label: str, spec: ConvSpec) -> None:
    """Pass, or show exactly the predicted deviation (strict: a deviation that stops reproducing fails)."""
    adapter = engine(label)
    reason = adapter.supports(spec)
    if reason:
        pytest.skip(f"{label} declines {spec.id}: {reason}")
    result = run_case(adapter, spec)
    deviation = predicted(label, spec)
    if deviation is None:
        assert result.outcome == "pass", result.message(label, spec)
        return
    assert result.outcome in deviation.outcomes, (
        f"{deviation.id} predicts {list(deviation.outcomes)}, got: {result.message(label, spec)}"
    )
    pytest.xfail(f"known deviation {deviation.id}: {result.message(label, spec)}")


@pytest.mark.parametrize("spec", CASES, ids=lambda s: s.name or s.id)
@pytest.mark.parametrize("label", ENGINES)
def test_engine_matches_reference(label: str, spec: ConvSpec) -> None:
    check(label, spec)


@pytest.mark.parametrize("label", ENGINES)
def test_engine_reports_version_and_settings(label: str) -> None:
    adapter = engine(label)
    assert adapter.name == label
    assert adapter.version() and adapter.version() != "?"
    settings = adapter.settings()
    assert settings and all(isinstance(k, str) for k in settings)


def test_jax_precision_variant_sets_the_argument() -> None:
    pytest.importorskip("jax", reason="jax is not installed")
    assert engine("jax:precision=highest").settings()["precision_argument"] == "HIGHEST"
    assert engine("jax").settings()["jax_enable_x64"] is True


def test_torch_channels_last_variant_forces_memory_format() -> None:
    pytest.importorskip("torch", reason="torch is not installed")
    adapter = engine("torch:layout=channels_last")
    assert adapter.memory_format(ConvSpec(n=1, h=4, w=4, c_in=2, c_out=2, kh=3, kw=3)) is adapter.torch.channels_last
    assert adapter.settings()["memory_format"] == "channels_last"


@pytest.mark.parametrize("label", ["torch", "torch-nn"])
def test_torch_records_tf32_and_mkldnn_precision(label: str) -> None:
    pytest.importorskip("torch", reason="torch is not installed")
    settings = engine(label).settings()
    assert {"threads", "cudnn_allow_tf32", "mkldnn_enabled"} <= set(settings)


def test_scipy_oracle_dilates_without_flipping() -> None:
    """A hand-checked case: 1x3 input [1, 2, 3], kernel [1, 10] dilated by 2 -> 1 * 1 + 10 * 3 = 31."""
    pytest.importorskip("scipy", reason="scipy is not installed")
    spec = ConvSpec(n=1, h=1, w=3, c_in=1, c_out=1, kh=1, kw=2, padding="VALID", dilations=(1, 2), bias=False)
    x = np.array([1.0, 2.0, 3.0], dtype=np.float32).reshape(1, 1, 3, 1)  # NHWC
    w = np.array([1.0, 10.0], dtype=np.float32).reshape(1, 2, 1, 1)  # HWIO
    out = engine("scipy").conv2d(x, w, None, spec)
    assert out.shape == (1, 1, 1, 1) and out[0, 0, 0, 0] == 31.0


def test_scipy_declines_large_cases_with_reason() -> None:
    pytest.importorskip("scipy", reason="scipy is not installed")
    big = ConvSpec(n=8, h=64, w=64, c_in=64, c_out=64, kh=5, kw=5)
    reason = engine("scipy").supports(big)
    assert reason is not None and "cap" in reason


def test_onnxruntime_declines_what_its_cpu_provider_lacks() -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    ort = engine("onnxruntime")
    base = ConvSpec(n=1, h=5, w=5, c_in=2, c_out=2, kh=3, kw=3)
    assert ort.supports(base) is None
    assert "float64" in (ort.supports(base.replace(dtype="float64")) or "")
    assert "dilation" in (ort.supports(base.replace(dilations=(2, 2))) or "")
    assert ort.supports(base.replace(dilations=(2, 2), padding="VALID")) is None


def test_tf_onednn_off_in_own_process() -> None:
    """tf:onednn=off on the edge corpus, in a fresh interpreter (TF reads the flag at import)."""
    pytest.importorskip("tensorflow", reason="tensorflow is not installed")
    import subprocess
    import sys

    code = (
        "import json, tests.test_engines as t\n"
        "a = t.adapters.load('tf:onednn=off')\n"
        "out = []\n"
        "for s in t.edge_cases():\n"
        "    if a.supports(s): continue\n"
        "    r = t.run_case(a, s)\n"
        "    d = t.predicted('tf:onednn=off', s)\n"
        "    ok = r.outcome == 'pass' if d is None else r.outcome in d.outcomes\n"
        "    out.append([s.id, ok, r.message('tf:onednn=off', s)])\n"
        "print(json.dumps(out))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600, check=True)
    import json

    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(rows) > 40
    unexplained = [msg for _, ok, msg in rows if not ok]
    assert not unexplained, "\n".join(unexplained)
