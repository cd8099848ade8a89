"""The scipy oracle's dilation: taps of the undilated kernel only, never a zero-inserted kernel.

A kernel dilated by inserting zeros multiplies the pixels under its holes by 0, and 0 * Inf = NaN: outputs
that a dilated convolution never computes from those pixels turn NaN. The adapter correlates each phase
sub-image x[p::d] with the undilated kernel instead (adapters/scipy_ref.py); these cases put an Inf or a NaN
under a hole.
"""

from __future__ import annotations

import numpy as np
import pytest

from refconv.compare import compare
from refconv.conformance.plugin import adapter_or_skip
from refconv.inputs import make_inputs
from refconv.reference import for_spec
from refconv.spec import ConvSpec, Padding

pytest.importorskip("scipy", reason="scipy is not installed")

from adapters.scipy_ref import phases  # noqa: E402  (after the skip: the module is the scipy adapter's)


@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan], ids=["inf", "ninf", "nan"])
def test_special_value_under_a_hole_is_not_read(special: float) -> None:
    """1x3 input [1, s, 3], kernel [1, 10] dilated by 2: the one window reads 1 and 3 -> 1 * 1 + 10 * 3 = 31."""
    spec = ConvSpec(n=1, h=1, w=3, c_in=1, c_out=1, kh=1, kw=2, padding="VALID", dilations=(1, 2), bias=False)
    x = np.array([1.0, special, 3.0], dtype=np.float32).reshape(1, 1, 3, 1)  # NHWC
    w = np.array([1.0, 10.0], dtype=np.float32).reshape(1, 2, 1, 1)  # HWIO
    out = adapter_or_skip("scipy").conv2d(x, w, None, spec)
    assert out.shape == (1, 1, 1, 1) and out[0, 0, 0, 0] == 31.0


def test_inf_reaches_only_the_windows_whose_taps_meet_it() -> None:
    """5x5 ones, +Inf at (1, 1), 2x2 ones kernel dilated 2x2, VALID: only output (1, 1) has a tap on it."""
    spec = ConvSpec(n=1, h=5, w=5, c_in=1, c_out=1, kh=2, kw=2, padding="VALID", dilations=(2, 2), bias=False,
                    dtype="float64")
    x = np.ones((1, 5, 5, 1))  # NHWC
    x[0, 1, 1, 0] = np.inf
    w = np.ones((2, 2, 1, 1))  # HWIO
    out = adapter_or_skip("scipy").conv2d(x, w, None, spec)[0, :, :, 0]  # (3, 3)
    expected = np.full((3, 3), 4.0)
    expected[1, 1] = np.inf  # taps (1, 1), (1, 3), (3, 1), (3, 3); (0, 0)'s window spans (1, 1) in a hole
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(("out", "stride", "dilation"), [(o, s, d) for o in (0, 1, 5, 7) for s in (1, 2, 3, 4)
                                                         for d in (1, 2, 3)])
def test_phases_place_every_output_once_on_its_rows(out: int, stride: int, dilation: int) -> None:
    """Each output is in one phase, and its window starts where its first tap reads: p + q * d == r * s."""
    seen = []
    for p, rows, starts in phases(out, stride, dilation):
        assert 0 <= p < dilation
        np.testing.assert_array_equal(p + starts * dilation, rows * stride)
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(out))


# Dilation and stride together: one phase (d divides s), every phase (coprime), and some of them (s 2, d 4).
GEOMETRIES = [((2, 2), (1, 1)), ((2, 2), (2, 2)), ((3, 2), (2, 3)), ((2, 4), (1, 2)), ((1, 3), (2, 1))]
VALUES = ["nan_mid", "inf_ring", "ninf_corner", "infmix_mid", "inf0_ring"]


@pytest.mark.parametrize("values", VALUES)
@pytest.mark.parametrize(("dilations", "strides"), GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
@pytest.mark.parametrize("padding", ["SAME", "VALID", ((2, 1), (0, 3))], ids=["same", "valid", "explicit"])
def test_dilated_special_values_match_the_reference(dilations: tuple[int, int], strides: tuple[int, int],
                                                    values: str, padding: Padding) -> None:
    """Every NaN and Inf where the float64 reference puts it, and the finite outputs within rounding."""
    spec = ConvSpec(n=2, h=11, w=10, c_in=4, c_out=4, kh=3, kw=2, strides=strides, dilations=dilations,
                    padding=padding, groups=2, values=values, dtype="float64")
    x, w, b = make_inputs(spec)
    expected, bound = for_spec(spec, x, w, b)
    result = compare(spec, expected, bound, adapter_or_skip("scipy").conv2d(x, w, b, spec))
    assert result.outcome == "pass", result.message("scipy", spec)
