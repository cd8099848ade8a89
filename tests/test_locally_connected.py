"""Locally connected layers: a hand case, the direct loop, and equality with conv2d under shared filters."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refconv import conv2d, locally_connected2d
from refconv.errors import SpecError
from refconv.locally_connected import locally_connected2d_direct, shared_filter
from refconv.padding import axis

BOTH = pytest.mark.parametrize("lc", [locally_connected2d, locally_connected2d_direct], ids=["fast", "direct"])


@BOTH
def test_each_position_uses_its_own_filter_hand_computed(lc):
    x = np.arange(9.0).reshape(1, 3, 3, 1)  # [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    w = np.zeros((2, 2, 2, 2, 1, 1))  # VALID 2x2 on 3x3: a 2x2 output, one 2x2 filter each
    w[0, 0] = 1.0  # top-left output: sum of its window 0+1+3+4
    w[0, 1, 0, 0] = 10.0  # top-right output: 10 * its window's top-left pixel (1)
    w[1, 1] = -1.0  # bottom-right output: -(4+5+7+8)
    b = np.array([[[0.5], [0.0]], [[0.0], [2.0]]])  # per-position bias (Ho, Wo, c_out)
    out = lc(x, w, b, strides=1, padding="VALID")[0, :, :, 0]
    assert out.tolist() == [[8.5, 10.0], [0.0, -22.0]]


@BOTH
def test_shared_bias_and_stride_same(lc):
    x = np.ones((1, 4, 4, 2))
    # SAME, in=4, k=2, s=2: out 2, no padding; every filter all ones over 2 channels -> 8, plus bias 1
    w = np.ones((2, 2, 2, 2, 2, 1))
    assert lc(x, w, np.array([1.0]), strides=2, padding="SAME")[0, :, :, 0].tolist() == [[9.0, 9.0], [9.0, 9.0]]


def _geometry(draw_padding, h, w, kh, kw, sh, sw):
    if draw_padding in ("SAME", "VALID"):
        return axis(draw_padding, h, kh, sh).out, axis(draw_padding, w, kw, sw).out
    (t, b), (left, r) = draw_padding
    return axis((t, b), h, kh, sh).out, axis((left, r), w, kw, sw).out


SHAPES = dict(
    n=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
    kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
    padding=st.one_of(st.sampled_from(["SAME", "VALID"]),
                      st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                                st.tuples(st.integers(0, 2), st.integers(0, 2)))),
    seed=st.integers(0, 2**16),
)


@settings(max_examples=40, deadline=None)
@given(**SHAPES)
def test_shared_filter_equals_conv2d(n, h, w, c_in, c_out, kh, kw, sh, sw, padding, seed):
    rng = np.random.default_rng(seed)
    x, k = rng.standard_normal((n, h, w, c_in)), rng.standard_normal((kh, kw, c_in, c_out))
    b = rng.standard_normal(c_out)
    ho, wo = _geometry(padding, h, w, kh, kw, sh, sw)
    got = locally_connected2d(x, shared_filter(k, (ho, wo)), b, strides=(sh, sw), padding=padding)
    want = conv2d(x, k, b, strides=(sh, sw), padding=padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(**SHAPES, per_position_bias=st.booleans())
def test_fast_equals_direct_loop(n, h, w, c_in, c_out, kh, kw, sh, sw, padding, seed, per_position_bias):
    rng = np.random.default_rng(seed)
    ho, wo = _geometry(padding, h, w, kh, kw, sh, sw)
    x = rng.standard_normal((n, h, w, c_in))
    wl = rng.standard_normal((ho, wo, kh, kw, c_in, c_out))
    b = rng.standard_normal((ho, wo, c_out) if per_position_bias else (c_out,))
    got = locally_connected2d(x, wl, b, strides=(sh, sw), padding=padding)
    want = locally_connected2d_direct(x, wl, b, strides=(sh, sw), padding=padding)
    assert got.shape == want.shape == (n, ho, wo, c_out)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_valid_with_input_smaller_than_kernel_is_empty():
    out = locally_connected2d(np.ones((1, 2, 2, 1)), np.ones((0, 0, 3, 3, 1, 4)), None, padding="VALID")
    assert out.shape == (1, 0, 0, 4)


@pytest.mark.parametrize(
    "x, w, b, words",
    [
        (np.ones((3, 3, 1)), np.ones((1, 1, 3, 3, 1, 1)), None, "rank 4"),
        (np.ones((1, 3, 3, 1)), np.ones((3, 3, 1, 1)), None, "rank 6"),
        (np.ones((1, 3, 3, 2)), np.ones((1, 1, 3, 3, 1, 1)), None, "channel mismatch"),
        (np.ones((1, 3, 3, 1)), np.ones((2, 2, 3, 3, 1, 1)), None, "1x1 output"),
        (np.ones((1, 3, 3, 1)), np.ones((1, 1, 3, 3, 1, 2)), np.ones(3), "bias"),
    ],
)
def test_bad_arguments_name_the_problem(x, w, b, words):
    with pytest.raises(SpecError, match=words):
        locally_connected2d(x, w, b, padding="VALID")
