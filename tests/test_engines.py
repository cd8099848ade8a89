"""Every available engine against the float64 reference, strictly, on the edge corpus and random cases.

A case an adapter declines through supports() is skipped with its reason; an adapter whose framework
is missing is skipped with the registry's reason. A failure that is a known framework
deviation is marked xfail with the deviation id; anything else fails with compare's message (the plugin's own check).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import pytest

import adapters
from refconv.cases import edge_cases, random_cases
from refconv.conformance.plugin import adapter_or_skip, assert_conforms
from refconv.serve import case_isa
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



def engine(label: str) -> Any:
    """The adapter for a label, loaded once per test process; skips with the reason when it cannot run."""
    return adapter_or_skip(label)


@pytest.mark.parametrize("spec", CASES, ids=lambda s: s.name or s.id)
@pytest.mark.parametrize("label", ENGINES)
def test_engine_matches_reference(label: str, spec: ConvSpec) -> None:
    """Pass, or exactly a reviewed deviation (strict), through the conformance plugin's own check."""
    assert_conforms(label, spec)


@pytest.mark.parametrize("label", ENGINES)
def test_engine_reports_version_and_settings(label: str) -> None:
    adapter = engine(label)
    assert adapter.name == label
    assert adapter.version() and adapter.version() != "?"
    settings = adapter.settings()
    assert settings and all(isinstance(k, str) for k in settings)


@pytest.mark.parametrize("label", ENGINES)
def test_engine_reports_its_kernels(label: str) -> None:
    """isa: '<family>:<level>' or a family alone, in general and per case (tests/test_isa.py has the families)."""
    adapter = engine(label)
    for spec in (None, CASES[0], CASES[0].replace(dtype="float64")):
        if spec is None or adapter.supports(spec) is None:
            assert re.fullmatch(r"[a-z0-9_-]+(:[A-Za-z0-9_.]+)?", case_isa(adapter, spec)), (label, spec)


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
        "import json, adapters\n"
        "from refconv.cases import edge_cases\n"
        "from refconv.conformance.check import run, verdict\n"
        "a = adapters.load('tf:onednn=off')\n"
        "out = []\n"
        "for s in edge_cases():\n"
        "    if a.supports(s): continue\n"
        "    v = verdict('tf:onednn=off', s, run(a, s))\n"
        "    out.append([s.id, v.action in ('pass', 'xfail'), v.message])\n"
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
