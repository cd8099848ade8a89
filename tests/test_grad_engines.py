"""The engines' training ops against the float64 reference, through the conformance plugin's own check:
literal cases named for what they pin down, the transposed-conv size ambiguity (tgrid subset), and the
declines. Each engine skips when its framework is absent."""

from __future__ import annotations

import pytest

from refconv.conformance.check import check
from refconv.conformance.plugin import adapter_or_skip
from refconv.grad_cases import tgrid_cases
from refconv.spec import ConvSpec

ENGINES = ("tf", "torch", "torch-nn", "jax", "keras", "onnxruntime", "onnx-ref")
GRAD_ENGINES = ("tf", "torch", "torch-nn", "jax", "keras")

S = ConvSpec  # shapes in the ids; each case named for the geometry it pins down
CASES = {
    "same_stride2_odd_total": S(n=2, h=6, w=6, c_in=3, c_out=4, kh=3, kw=3, strides=2, seed=1),
    "same_even_kernel": S(n=1, h=7, w=5, c_in=2, c_out=3, kh=2, kw=4, seed=2),
    "valid_stride_gt_kernel": S(n=2, h=9, w=8, c_in=2, c_out=2, kh=2, kw=1, strides=(3, 4), padding="VALID", seed=3),
    "explicit_asymmetric": S(n=1, h=8, w=7, c_in=3, c_out=2, kh=3, kw=3, strides=(2, 1), padding=((2, 0), (0, 1)),
                             seed=4),
    "grouped_same": S(n=1, h=6, w=6, c_in=4, c_out=6, kh=3, kw=3, groups=2, seed=6),
    "float64_dilated_long_filter_sum": S(n=4, h=16, w=16, c_in=2, c_out=3, kh=3, kw=3, dilations=2, dtype="float64",
                                         seed=7),
    "float16_stride2": S(n=1, h=8, w=8, c_in=4, c_out=4, kh=3, kw=3, strides=2, dtype="float16", seed=8),
}
OPS = ("grad_input", "grad_filter", "transpose")
PARAMS = [pytest.param(label, name, op, id=f"{label}-{name}-{op}") for label in ENGINES for name in CASES for op in OPS
          if op == "transpose" or label in GRAD_ENGINES]


@pytest.mark.parametrize(("label", "name", "op"), PARAMS)
def test_training_op_matches_reference(label: str, name: str, op: str) -> None:
    """Pass, a strict known deviation, or the engine's own declared reason; never an unexplained failure."""
    result = check(label, adapter_or_skip(label), CASES[name].replace(op=op))
    assert result.action in ("pass", "xfail", "skip"), result.message
    if result.action == "skip":
        assert "declined" not in result.message  # declining happens up front, through supports()


TGRID = tgrid_cases()[::9]  # every ninth: each padding form, strides beyond the kernel, both size choices


@pytest.mark.slow  # about 25 s for the seven engines on two cores
@pytest.mark.parametrize("label", ENGINES)
def test_transpose_picks_the_asked_size_among_the_ambiguous_ones(label: str) -> None:
    """Each engine's output_shape / output_padding / pads arithmetic lands on the case's own input size."""
    adapter = adapter_or_skip(label)
    verdicts = [check(label, adapter, spec) for spec in TGRID]
    failures = [v.message for v in verdicts if v.action == "fail"]
    assert not failures, "\n".join(failures)
    assert any(v.action == "pass" for v in verdicts)


@pytest.mark.parametrize("label", ["onnxruntime", "onnx-ref"])
def test_onnx_engines_offer_transpose_only(label: str) -> None:
    adapter = adapter_or_skip(label)
    result = check(label, adapter, CASES["same_even_kernel"].replace(op="grad_input"))
    assert result.action == "skip" and "adapter has no grad_input" in result.message


def test_declines_name_what_the_framework_cannot_express() -> None:
    jax = adapter_or_skip("jax")
    assert "feature_group_count" in (jax.supports(CASES["grouped_same"].replace(op="transpose")) or "")
    keras = adapter_or_skip("keras")
    assert "explicit pads" in (keras.supports(CASES["explicit_asymmetric"].replace(op="transpose")) or "")
