"""The capability matrix: probed from supports(), each adapter in its own process, rendered as a table."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from adapters.capabilities import CAPABILITIES, describe, no_cuda_reason, probe
from refconv.commands.adapters import SHORT, render
from refconv.hardware import cpu_features
from refconv.padding import output_hw
from refconv.spec import ConvSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NoFloat64:
    """A stand-in adapter that declines float64 and nothing else."""

    def supports(self, spec: ConvSpec) -> str | None:
        return "no float64 here" if spec.dtype == "float64" else None


def test_probe_asks_supports_for_every_capability() -> None:
    result = probe(NoFloat64())
    assert set(result) == set(CAPABILITIES)
    assert result["float64"] == "no float64 here"
    assert all(reason is None for name, reason in result.items() if name != "float64")


def test_representative_specs_show_their_capability() -> None:
    base = CAPABILITIES["float32"]
    assert CAPABILITIES["dilation"].dilations != (1, 1) and CAPABILITIES["dilation+same"].padding == "SAME"
    assert CAPABILITIES["dilation+stride"].strides != (1, 1)
    assert CAPABILITIES["depthwise"].groups == CAPABILITIES["depthwise"].c_in
    assert 1 < CAPABILITIES["groups"].groups < CAPABILITIES["groups"].c_in
    assert CAPABILITIES["explicit_pads"].padding_kind == "EXPLICIT"
    assert 0 in output_hw(CAPABILITIES["empty_output"]) and 0 not in output_hw(base)
    assert not CAPABILITIES["no_bias"].bias and CAPABILITIES["relu"].activation == "relu"
    assert set(SHORT) == set(CAPABILITIES)


def test_describe_numpy_in_process() -> None:
    out = describe("numpy")
    assert out["available"] and out["version"]
    assert out["capabilities"]["channels_last"] and out["capabilities"]["float64"] is None
    assert out["isa"].partition(":")[0] in ("openblas", "blas") and out["cpu_features"] == cpu_features()


def test_describe_reports_unavailable_and_broken_adapters() -> None:
    if not no_cuda_reason("torch"):
        pytest.skip("this machine has CUDA")
    expected = "not installed" if importlib.util.find_spec("torch") is None else "CUDA"
    assert not describe("torch-cuda")["available"] and expected in describe("torch-cuda")["reason"]
    broken = describe("adapters.numpy_ref:NoSuchClass")
    assert not broken["available"] and "NoSuchClass" in broken["reason"]


def test_render_lists_reasons_below_the_table() -> None:
    results = [
        {"adapter": "fake", "available": True, "reason": "", "version": "1.0", "settings": {"threads": 1},
         "capabilities": probe(NoFloat64()), "isa": "onednn:avx2", "cpu_features": "x86-64-v3 avx2 fma"},
        {"adapter": "gone", "available": False, "reason": "gone is not installed", "version": "", "settings": {},
         "capabilities": {}, "isa": "", "cpu_features": "x86-64-v3 avx2 fma"},
    ]
    text = render(results, settings=True)
    header, _, fake_row, gone_row = text.splitlines()[:4]
    assert header.split()[:4] == ["adapter", "available", "version", "isa"]
    assert fake_row.split()[:4] == ["fake", "yes", "1.0", "onednn:avx2"] and fake_row.split().count("no") == 1
    assert "cpu_features: x86-64-v3 avx2 fma" in text.splitlines()
    assert gone_row.split()[:2] == ["gone", "no"]
    assert "fake / float64: no float64 here" in text and "gone: gone is not installed" in text
    assert '"threads": 1' in text


def test_refconv_adapters_probes_in_subprocesses_only() -> None:
    """`refconv adapters` prints the matrix and never imports a framework in its own process."""
    code = (
        "import sys, refconv.cli\n"
        "rc = refconv.cli.main(['adapters', 'numpy', 'scipy', 'torch-cuda', '--json', '--jobs', '1'])\n"
        "print('FRAMEWORKS', [m for m in ('scipy', 'torch', 'tensorflow', 'jax') if m in sys.modules], rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                          capture_output=True, text=True, timeout=300, check=True)
    lines = done.stdout.strip().splitlines()
    rows = {r["adapter"]: r for r in map(json.loads, lines[:-1])}
    assert lines[-1] == "FRAMEWORKS [] 0"
    assert rows["numpy"]["available"] and rows["numpy"]["capabilities"]["float32"] is None
    assert rows["numpy"]["isa"] and rows["numpy"]["cpu_features"] == cpu_features()
    assert rows["torch-cuda"]["isa"] == "" and rows["torch-cuda"]["cpu_features"] == cpu_features()
    if rows["scipy"]["available"]:  # scipy was imported, but in the worker
        assert rows["scipy"]["capabilities"]["channels_last"]
    assert set(rows) == {"numpy", "scipy", "torch-cuda"}


def test_refconv_adapters_unknown_name_is_one_line_exit_2() -> None:
    done = subprocess.run([sys.executable, "-m", "refconv", "adapters", "tensorflw"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown adapter 'tensorflw'" in done.stderr
