"""Conformance of the adapters under test: the selected cases, hypothesis cases, metamorphic relations
and the known-deviation replay. Run with `pytest --pyargs refconv.conformance` (options: see plugin.py).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from refconv import deviations, metamorphic, metamorphic_ops, ops, strategies, witness
from refconv.conformance.check import adapter_isa, check, known_wrong_values, run
from refconv.conformance.plugin import adapter_or_skip, assert_conforms
from refconv.spec import DTYPES, LAYOUTS, ConvSpec

# Cases the metamorphic relations run on: every relation applies to at least one, none is empty.
METAMORPHIC_CASES = (
    ConvSpec(n=2, h=7, w=6, c_in=4, c_out=6, kh=3, kw=2, strides=(2, 1), padding="SAME", groups=2, seed=1),
    ConvSpec(n=3, h=9, w=8, c_in=3, c_out=4, kh=3, kw=3, strides=(2, 3), dilations=(2, 1),
             padding=((1, 2), (0, 3)), seed=2),
    ConvSpec(n=1, h=8, w=8, c_in=4, c_out=4, kh=2, kw=4, dilations=(1, 2), padding="VALID", groups=4, seed=3),
    ConvSpec(n=2, h=6, w=5, c_in=8, c_out=3, kh=1, kw=1, strides=(2, 2), activation="relu", seed=4),
)


def test_case(refconv_label: str, refconv_case: ConvSpec) -> None:
    """One selected case against the reference: pass, or a numpy-style failure with the repro command."""
    assert_conforms(refconv_label, refconv_case)


@pytest.mark.parametrize("spec", METAMORPHIC_CASES, ids=[c.id for c in METAMORPHIC_CASES])
@pytest.mark.parametrize("relation", list(metamorphic.RELATIONS))
def test_metamorphic(refconv_label: str, relation: str, spec: ConvSpec) -> None:
    """A relation between two computations through the same adapter holds within the bound model."""
    recorder = witness.Recorder(metamorphic.adapter_conv(adapter_or_skip(refconv_label)))
    result = metamorphic.check(relation, recorder, spec)
    if result.skipped:
        pytest.skip(result.message())
    if not result.ok:
        # witnessed on the calls that disagreed, on the kernels that ran them
        known = known_wrong_values(refconv_label, recorder.calls, adapter_or_skip(refconv_label))
        if known:
            pytest.xfail(f"known deviation {', '.join(known)} [{result.message()}]")
    assert result.ok, f"{refconv_label}: {result.message()}"


@pytest.mark.parametrize("spec", METAMORPHIC_CASES, ids=[c.id for c in METAMORPHIC_CASES])
@pytest.mark.parametrize("relation", list(metamorphic_ops.OP_RELATIONS))
def test_op_relation(refconv_label: str, relation: str, spec: ConvSpec) -> None:
    """A training-op identity (adjoint, batch split, transpose of VALID) through the adapter's own ops."""
    result = metamorphic_ops.check_op(relation, adapter_or_skip(refconv_label), spec)
    if result.skipped:
        pytest.skip(result.message())
    assert result.ok, f"{refconv_label}: {result.message()}"


def test_known_deviations_reproduce(refconv_label: str, refconv_deviation: deviations.Deviation) -> None:
    """Strict: a reviewed entry that names this adapter still shows its behaviour on its example.

    Where the entry's hardware conditions do not hold on the kernels the adapter runs the example on here (its
    `isa`) it skips as not applicable here; where they hold and the example no longer fails as documented it fails
    (fixed here?). An example the adapter declines here (e.g. NCHW with TF's oneDNN off) skips with the reason.
    """
    adapter = adapter_or_skip(refconv_label)
    entry = refconv_deviation
    declined = ops.unsupported_reason(adapter, entry.example_spec)
    if declined:
        pytest.skip(f"{refconv_label} declines {entry.id}'s example {entry.example} here: {declined}")
    skipped: list[str] = []
    stale = deviations.strict(lambda label, spec: run(adapter, spec).outcome, [refconv_label], [entry],
                              isolated=lambda label, spec: witness.fresh_compare(label, spec).outcome,  # crash, "fresh"
                              isa=lambda label, spec: adapter_isa(adapter, spec), skipped=skipped)
    if skipped:
        pytest.skip("; ".join(skipped))
    assert not stale, "\n".join(stale)


@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.filter_too_much])  # engines that decline many drawn cases
def test_hypothesis(refconv_label: str, data: st.DataObject, pytestconfig: pytest.Config) -> None:
    """Drawn cases and drawn values: pass, or exactly a reviewed deviation (shrinks to a minimal case)."""
    adapter = adapter_or_skip(refconv_label)
    dtype_text = pytestconfig.getoption("--refconv-dtype")
    dtypes = [d.strip() for d in dtype_text.split(",")] if dtype_text else list(DTYPES)
    spec = data.draw(strategies.specs(dtypes=dtypes, layouts=LAYOUTS), label="spec")
    assume(not adapter.supports(spec))  # a declined case is 'unsupported', not a finding
    values = data.draw(strategies.inputs(spec), label="inputs")
    result = check(refconv_label, adapter, spec, values)
    assert result.action in ("pass", "xfail"), result.message
