"""compare(): outcomes, metrics, NaN/Inf handling and the tolerance model."""

import numpy as np
import pytest

from refconv import ConvSpec
from refconv.compare import TOLERANCE_C, compare, eps, ulp
from refconv.inputs import make_inputs
from refconv.reference import for_spec

SPEC = ConvSpec(n=1, h=6, w=6, c_in=8, c_out=4, kh=3, kw=3)


def _case(spec=SPEC):
    x, w, b = make_inputs(spec)
    expected, bound = for_spec(spec, x, w, b)
    return expected, bound


def test_reference_rounded_once_passes_with_bound_ratio_at_most_half():
    expected, bound = _case()
    c = compare(SPEC, expected, bound, expected.astype(np.float32))
    assert c.outcome == "pass" and c.mismatched == 0 and c.n_elements == expected.size
    assert 0 < c.bound_ratio <= 0.5  # one rounding to float32 costs at most eps/2 * |y| <= eps/2 * bound


def test_a_float32_conv_computed_through_bfloat16_is_a_mismatch():
    import ml_dtypes

    spec = SPEC
    x, w, b = make_inputs(spec)
    expected, bound = for_spec(spec, x, w, b)
    lossy_x = x.astype(ml_dtypes.bfloat16).astype(np.float64)
    lossy, _ = for_spec(spec, lossy_x, w, b)
    c = compare(spec, expected, bound, lossy.astype(np.float32))
    assert c.outcome == "mismatch" and c.mismatched > 0
    assert c.bound_ratio > 100 * TOLERANCE_C["float32"]
    assert "elements beyond tolerance" in c.message("fake", spec)


def test_wrong_shape():
    expected, bound = _case()
    c = compare(SPEC, expected, bound, np.zeros((1, 5, 5, 4)))
    assert c.outcome == "wrong_shape" and c.actual_shape == (1, 5, 5, 4)
    assert "expected (1, 6, 6, 4)" in c.message("fake", SPEC)


def test_empty_outputs_pass_when_shapes_agree():
    spec = ConvSpec(n=1, h=2, w=2, c_in=1, c_out=3, kh=3, kw=3, padding="VALID")
    expected, bound = _case(spec)
    assert compare(spec, expected, bound, np.zeros((1, 0, 0, 3), np.float32)).outcome == "pass"
    assert compare(spec, expected, bound, np.zeros((1, 1, 1, 3), np.float32)).outcome == "wrong_shape"


def test_nan_where_the_reference_is_finite_is_a_mismatch():
    expected, bound = _case()
    got = expected.astype(np.float32)
    got[0, 2, 3, 1] = np.nan
    c = compare(SPEC, expected, bound, got)
    assert c.outcome == "mismatch" and c.mismatched == 1 and np.isinf(c.bound_ratio)


def test_nan_and_inf_positions_must_match_the_reference():
    spec = ConvSpec(n=1, h=1, w=2, c_in=1, c_out=1, kh=1, kw=1, bias=False)
    expected = np.array([np.inf, np.nan]).reshape(1, 1, 2, 1)
    bound = np.array([np.inf, np.nan]).reshape(1, 1, 2, 1)
    assert compare(spec, expected, bound, expected.astype(np.float32)).outcome == "pass"
    swapped = np.array([np.nan, np.inf], np.float32).reshape(1, 1, 2, 1)
    assert compare(spec, expected, bound, swapped).mismatched == 2
    assert compare(spec, expected, bound, -expected.astype(np.float32)).mismatched == 1  # -inf vs +inf


def test_one_ulp_off_in_float16_is_one_ulp():
    spec = SPEC.replace(dtype="float16")
    expected, bound = _case(spec)
    got = expected.astype(np.float16)
    i = np.unravel_index(np.argmax(np.abs(expected)), expected.shape)
    got[i] = np.nextafter(got[i], np.float16(np.inf))
    c = compare(spec, expected, bound, got)
    assert 0.5 <= c.max_ulp <= 1.5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_ulp_of_one(dtype):
    assert ulp(np.array([1.0]), dtype)[0] == eps(dtype)
