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


def predicted(label: str, spec: ConvSpec) -> deviations.Deviation | None:
    """The known deviation that predicts this adapter misbehaves on this case, or None."""
    return deviations.expected_for(label, {**case_columns(spec), "adapter": label})


def check(label: str, spec: ConvSpec) -> None:
    """Pass, or show exactly the predicted deviation (strict: a deviation that stops reproducing fails)."""
    adapter = engine(label)
    reason = adapter.supports(spec)
    if reason:
        pytest.skip(f"{label} declines {spec.id}: {reason}")
    result = run_case(adapter, spec)
    deviation = predicted(label, spec)
    if deviation is None or (result.outcome == "pass" and not deviation.exact):
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
