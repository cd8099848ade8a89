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


# --- non-finite values, overflow and the dtype (issue 14) -------------------------------------------

# x = [1e308, 1e308], w = [1, -1]: the answer is 0, but |x| conv |w| = 2e308 = inf in float64
BIG = ConvSpec(n=1, h=1, w=2, c_in=1, c_out=1, kh=1, kw=2, padding="VALID", bias=False, dtype="float64")


def _big_case():
    x = np.array([1e308, 1e308]).reshape(1, 1, 2, 1)  # NHWC
    w = np.array([1.0, -1.0]).reshape(1, 2, 1, 1)  # HWIO
    return for_spec(BIG, x, w, None)


def test_overflowing_bound_does_not_let_a_nan_output_pass():
    expected, bound = _big_case()
    assert expected.ravel().tolist() == [0.0] and np.isinf(bound).all()
    for bad in (np.nan, np.inf, -np.inf, 1e300):
        c = compare(BIG, expected, bound, np.full((1, 1, 1, 1), bad))
        assert c.outcome == "mismatch" and c.mismatched == 1, bad
        assert not np.isnan(c.bound_ratio)


def test_overflowing_bound_judges_finite_outputs_against_the_largest_float64():
    expected, bound = _big_case()
    assert compare(BIG, expected, bound, np.zeros((1, 1, 1, 1))).outcome == "pass"
    # 1e293 is ~4e8 ulps of 2e308 away from 0: inside C * eps * max(float64) = 16 * 2.2e-16 * 1.8e308
    near = compare(BIG, expected, bound, np.full((1, 1, 1, 1), 1e292))
    assert near.outcome == "pass" and 0 < near.bound_ratio < TOLERANCE_C["float64"]


def test_finite_reference_with_finite_extremes_does_not_overflow_the_difference():
    spec = ConvSpec(n=1, h=1, w=1, c_in=1, c_out=1, kh=1, kw=1, padding="VALID", bias=False, dtype="float64")
    expected = np.full((1, 1, 1, 1), 1.7e308)
    bound = np.full((1, 1, 1, 1), np.inf)
    c = compare(spec, expected, bound, np.full((1, 1, 1, 1), -1.7e308))  # difference 3.4e308 > max float64
    assert c.outcome == "mismatch" and np.isinf(c.max_abs_err)


F16 = ConvSpec(n=1, h=1, w=1, c_in=1, c_out=1, kh=1, kw=1, padding="VALID", bias=False, dtype="float16")


def test_rounding_past_the_dtype_range_expects_inf_of_the_same_sign():
    expected, bound = np.full((1, 1, 1, 1), 70000.0), np.full((1, 1, 1, 1), 70000.0)
    assert compare(F16, expected, bound, np.full((1, 1, 1, 1), np.inf, np.float16)).outcome == "pass"
    for bad in (-np.inf, np.nan, 65504.0):  # wrong sign, NaN, saturated to the largest float16
        assert compare(F16, expected, bound, np.full((1, 1, 1, 1), bad, np.float16)).outcome == "mismatch", bad


def test_inf_is_rejected_well_inside_the_dtype_range():
    expected, bound = np.full((1, 1, 1, 1), 60000.0), np.full((1, 1, 1, 1), 60000.0)
    assert compare(F16, expected, bound, np.full((1, 1, 1, 1), np.inf, np.float16)).outcome == "mismatch"
    assert compare(F16, expected, bound, np.full((1, 1, 1, 1), 60000.0, np.float16)).outcome == "pass"


def test_a_special_reference_value_needs_the_same_special_output():
    expected = np.array([np.inf, -np.inf, np.nan]).reshape(1, 1, 3, 1)
    bound = np.full((1, 1, 3, 1), np.inf)
    spec = ConvSpec(n=1, h=1, w=3, c_in=1, c_out=1, kh=1, kw=1, bias=False)
    assert compare(spec, expected, bound, expected.astype(np.float32)).outcome == "pass"
    finite = np.array([3e38, -3e38, 0.0], np.float32).reshape(1, 1, 3, 1)
    assert compare(spec, expected, bound, finite).mismatched == 3


def test_a_result_in_another_dtype_is_wrong_dtype():
    expected, bound = _case()
    c = compare(SPEC, expected, bound, expected)  # float64 for a float32 case
    assert c.outcome == "wrong_dtype" and c.actual_dtype == "float64"
    assert "returned float64, expected float32" in c.message("fake", SPEC)
    assert compare(SPEC, expected, bound, expected.astype(np.float32)).actual_dtype == "float32"


def test_float32_for_a_bfloat16_case_is_wrong_dtype_and_bfloat16_passes():
    import ml_dtypes

    spec = SPEC.replace(dtype="bfloat16")
    expected, bound = _case(spec)
    assert compare(spec, expected, bound, expected.astype(np.float32)).outcome == "wrong_dtype"
    right = compare(spec, expected, bound, expected.astype(ml_dtypes.bfloat16))
    assert right.outcome == "pass" and right.actual_dtype == "bfloat16"


def test_a_value_mismatch_wins_over_a_wrong_dtype():
    expected, bound = _case()
    c = compare(SPEC, expected, bound, expected + 1.0)
    assert c.outcome == "mismatch" and c.actual_dtype == "float64"


def test_the_row_records_actual_dtype():
    from refconv.rows import RESULT_COLUMNS

    expected, bound = _case()
    row = compare(SPEC, expected, bound, expected.astype(np.float32)).as_row()
    assert row["actual_dtype"] == "float32" and "actual_dtype" in RESULT_COLUMNS


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_the_finite_fast_path_gives_exactly_the_general_errors(dtype):
    from refconv import compare as C

    spec = ConvSpec.from_id(f"n1-6x6x2-k3x3x2-s1x1-valid-{C_DTYPE_TAGS[dtype]}")
    rng = np.random.default_rng(7)
    for scale in (1.0, 1e-30, 1e150, 1e307):  # ordinary, tiny, huge, and differences that overflow float64
        expected = rng.standard_normal((1, 4, 4, 2)) * scale
        bound = np.abs(rng.standard_normal((1, 4, 4, 2))) * scale * 3
        got = expected * (1 + rng.standard_normal(expected.shape) * 1e-3)
        got[0, 0, 0, 0] = -expected[0, 0, 0, 0] * 1.5  # one element far off (inf difference at 1e307)
        assert C._all_finite(expected, bound, got) == (scale < 1e307)  # at 1e307 the sums overflow: general path
        fast = C._element_errors(spec, expected, bound, got, 16.0)
        general = C._special_element_errors(spec, expected, bound, got, 16.0)
        for a, b in zip(fast, general, strict=True):
            assert np.array_equal(a, b)


C_DTYPE_TAGS = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}
