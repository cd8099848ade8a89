"""This repository's conformance run, through the same plugin users get: the edge corpus and a grid subset
(--refconv-cases, default edge,grid:200), hypothesis cases and metamorphic relations, for every available
built-in adapter (or the --refconv-adapter ones). Plus the plugin end to end on a deliberately wrong
third-party adapter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from regressions import MINIMAL_FAILURES, pinned

from refconv import deviations, strategies
from refconv.conformance.check import adapter_isa, check, repro
from refconv.conformance.plugin import adapter_or_skip, installed
from refconv.conformance.test_conv2d import (  # noqa: F401  (collected here too)
    test_case,
    test_hypothesis,
    test_known_deviations_reproduce,
    test_metamorphic,
)
from refconv.hardware import cpu_features
from refconv.spec import ConvSpec

ROOT = Path(__file__).resolve().parents[1]


@pinned
@given(spec=strategies.specs(max_side=6, max_channels=4))
def test_seeded_case(refconv_label: str, spec: ConvSpec) -> None:
    """Drawn specs with seeded inputs (pinned minimal failures first): pass, or exactly a known deviation."""
    result = check(refconv_label, adapter_or_skip(refconv_label), spec)
    assert result.action in ("pass", "xfail", "skip"), result.message


def test_minimal_failures_are_known(refconv_label: str) -> None:
    """Each pinned minimal failure still fails on its adapter, and exactly as the reviewed entry says."""
    pinned_here = [(case_id, deviation) for case_id, label, deviation in MINIMAL_FAILURES if label == refconv_label]
    if not pinned_here:
        pytest.skip(f"no minimal failure pinned for {refconv_label}")
    adapter = adapter_or_skip(refconv_label)
    entries = {d.id: d for d in deviations.load()}
    not_here = []
    for case_id, deviation in pinned_here:
        spec = ConvSpec.from_id(case_id)
        reason = entries[deviation].not_applicable(refconv_label, adapter_isa(adapter, spec), cpu_features())
        if reason:  # its kernels do not run here (e.g. tf's oneDNN off): nothing to hold it to
            not_here.append(reason)
            continue
        result = check(refconv_label, adapter, spec)
        assert result.action == "xfail", result.message
        assert re.search(rf"known deviation {deviation}( \(\w+\))?:", result.message), result.message
    if len(not_here) == len(pinned_here):
        pytest.skip("; ".join(not_here))


def _pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    plugin = [] if installed() else ["-p", "refconv.conformance.plugin"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("HYPOTHESIS_PROFILE", None)
    cmd = [sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider", "--pyargs", "refconv.conformance",
           "--refconv-profile", "ci", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_third_party_adapter_gets_a_verdict(tmp_path: Path) -> None:
    """One command points the plugin at a user's class; the wrong SAME padding fails with message and repro."""
    done = _pytest("--refconv-adapter", "wrong_adapter:OddPadBeforeConv", "--refconv-cases", "edge",
                   "-k", "test_case", "-q", cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "same_odd_total" not in out  # ids are case ids, not names
    odd_total = ConvSpec(n=1, h=6, w=6, c_in=2, c_out=2, kh=3, kw=3, strides=(2, 2), padding="SAME")
    assert f"FAILED test_conv2d.py::test_case[{odd_total.id}@wrong_adapter:OddPadBeforeConv]" in out
    assert "elements beyond tolerance" in out and "bound ratio" in out
    assert f"reproduce: {repro('wrong_adapter:OddPadBeforeConv', odd_total)}" in out
    assert "case: 3x3 kernel, stride 2, SAME, 6x6 input" in out
    even_total = ConvSpec(n=1, h=5, w=5, c_in=2, c_out=2, kh=3, kw=3, strides=(2, 2), padding="SAME")
    assert f"test_case[{even_total.id}@wrong_adapter:OddPadBeforeConv]" not in out  # even totals pass


def test_unknown_adapter_is_one_usage_line(tmp_path: Path) -> None:
    """A typo in --refconv-adapter stops the run with the registry's list of choices, not a traceback."""
    done = _pytest("--refconv-adapter", "tensorflw", "-q", cwd=tmp_path)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "unknown adapter 'tensorflw'; available:" in done.stderr
