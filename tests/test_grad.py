"""The training reference: hand-checked gradients, agreement with the literal loops, the adjoint identity,
bounded memory and bad arguments."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refconv
from refconv import grad, reference
from refconv.errors import SpecError
from refconv.reference import conv2d
from refconv.spec import ConvSpec
from refconv.strategies import specs

GEOMETRIES = [  # (strides, padding, dilations, groups): every padding form, stride > kernel, dilation, groups
    (1, "SAME", 1, 1), (2, "SAME", 1, 1), ((2, 3), "VALID", 1, 1), (1, ((2, 0), (1, 3)), (2, 1), 1),
    (3, ((1, 2), (0, 1)), 1, 2), ((1, 2), "SAME", (1, 3), 2), (4, "VALID", 1, 4), (2, "SAME", 2, 4),
]


def _arrays(seed: int, x_shape: tuple[int, ...], w_shape: tuple[int, ...], args: tuple) -> tuple:
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y = conv2d(x, w, None, *args)
    return x, w, y, rng.standard_normal(y.shape)


def test_grad_input_hand_computed():
    dy = np.ones((1, 2, 2, 1))  # forward: 3x3 input, 2x2 ones kernel, VALID -> 2x2
    # each input pixel collects one per window that read it: corners 1, edges 2, centre 4
    out = refconv.conv2d_grad_input(dy, np.ones((2, 2, 1, 1)), (1, 3, 3, 1), padding="VALID")
    assert out[0, :, :, 0].tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]


def test_grad_filter_hand_computed():
    x = np.arange(1.0, 5.0).reshape(1, 1, 4, 1)  # one row 1..4
    dy = np.array([1.0, 10.0]).reshape(1, 1, 2, 1)  # forward: 1x3 kernel, VALID -> 2 outputs
    # dw[j] = x[j] * dy[0] + x[j + 1] * dy[1]
    out = refconv.conv2d_grad_filter(x, dy, (1, 3, 1, 1), padding="VALID")
    assert out[0, :, 0, 0].tolist() == [21.0, 32.0, 43.0]


def test_transpose_stride2_same_odd_total_hand_computed():
    # forward SAME, k=3, s=2, in=6: out=3, pads (0, 1): output j reads inputs 2j, 2j+1, 2j+2
    y = np.array([1.0, 10.0, 100.0]).reshape(1, 1, 3, 1)
    w = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    out = refconv.conv2d_transpose(y, w, (1, 1, 6, 1), strides=(1, 2), padding="SAME")
    # input i gathers y[j] * w[i - 2j]; the padding pixel (index 6) is dropped
    assert out[0, 0, :, 0].tolist() == [1.0, 2.0, 13.0, 20.0, 130.0, 200.0]
    # the other size that maps to 3 outputs, 5, has pads (1, 1): output j reads 2j-1..2j+1, every value moves
    five = refconv.conv2d_transpose(y, w, (1, 1, 5, 1), strides=(1, 2), padding="SAME")
    assert five[0, 0, :, 0].tolist() == [2.0, 13.0, 20.0, 130.0, 200.0]


def test_grad_bias_sums_over_batch_and_space():
    dy = np.arange(24.0).reshape(2, 3, 2, 2)
    assert refconv.conv2d_grad_bias(dy).tolist() == [dy[..., 0].sum(), dy[..., 1].sum()]


@pytest.mark.parametrize(("strides", "padding", "dilations", "groups"), GEOMETRIES)
def test_fast_equals_literal_loops_and_adjoint_identity(strides, padding, dilations, groups):
    args = (strides, padding, dilations, groups)
    x, w, y, dy = _arrays(7, (2, 9, 8, 4), (3, 2, 4 // groups, 8), args)
    gi = grad.conv2d_grad_input(dy, w, x.shape, *args)
    gf = grad.conv2d_grad_filter(x, dy, w.shape, *args)
    np.testing.assert_allclose(gi, grad.conv2d_grad_input_direct(dy, w, x.shape, *args), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gf, grad.conv2d_grad_filter_direct(x, dy, w.shape, *args), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(grad.conv2d_transpose(dy, w, x.shape, *args), gi)
    np.testing.assert_allclose(grad.conv2d_transpose_direct(dy, w, x.shape, *args), gi, rtol=1e-12, atol=1e-12)
    inner = float(np.sum(y * dy))
    assert np.isclose(inner, np.sum(x * gi), rtol=1e-12, atol=1e-10)
    assert np.isclose(inner, np.sum(w * gf), rtol=1e-12, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(spec=specs(max_side=7, max_channels=4), seed=st.integers(0, 2**16))
def test_adjoint_identity_holds_for_drawn_specs(spec: ConvSpec, seed: int):
    args = (spec.strides, spec.padding, spec.dilations, spec.groups)
    x, w, y, dy = _arrays(seed, spec.input_shape, spec.kernel_shape, args)
    inner = float(np.sum(y * dy))
    gi, gf = grad.conv2d_grad_input(dy, w, x.shape, *args), grad.conv2d_grad_filter(x, dy, w.shape, *args)
    scale = float(np.sum(np.abs(y) * np.abs(dy))) + 1.0
    assert abs(inner - np.sum(x * gi)) <= 1e-12 * scale
    assert abs(inner - np.sum(w * gf)) <= 1e-12 * scale
    if spec.n * spec.h * spec.w * spec.c_out <= 200:  # the loops are slow: small cases only
        np.testing.assert_allclose(gi, grad.conv2d_grad_input_direct(dy, w, x.shape, *args), atol=1e-12)
        np.testing.assert_allclose(gf, grad.conv2d_grad_filter_direct(x, dy, w.shape, *args), atol=1e-12)


def test_empty_forward_output_gives_zero_gradients():
    x, w = np.ones((1, 2, 2, 3)), np.ones((3, 3, 3, 4))  # VALID: the kernel never fits, y is (1, 0, 0, 4)
    dy = np.zeros((1, 0, 0, 4))
    assert not grad.conv2d_grad_input(dy, w, x.shape, padding="VALID").any()
    assert grad.conv2d_grad_input(dy, w, x.shape, padding="VALID").shape == x.shape
    assert not grad.conv2d_grad_filter(x, dy, w.shape, padding="VALID").any()


def test_chunked_paths_equal_one_chunk(monkeypatch):
    args = (2, ((1, 2), (2, 1)), 1, 2)
    x, w, _, dy = _arrays(3, (3, 12, 11, 4), (3, 3, 2, 6), args)
    whole = grad.conv2d_grad_input(dy, w, x.shape, *args), grad.conv2d_grad_filter(x, dy, w.shape, *args)
    monkeypatch.setattr(reference, "_CHUNK_BYTES", 64)  # one output row per chunk
    monkeypatch.setattr(reference, "_MIN_CHUNK_PIXELS", 1)
    np.testing.assert_allclose(grad.conv2d_grad_input(dy, w, x.shape, *args), whole[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(grad.conv2d_grad_filter(x, dy, w.shape, *args), whole[1], rtol=1e-13, atol=1e-13)


def test_working_memory_stays_near_the_chunk_size():
    x, w = np.ones((4, 96, 96, 16)), np.ones((3, 3, 16, 16))  # x and dy are 4.7 MB each; im2col of all would be 42 MB
    dy = np.ones((4, 96, 96, 16))
    for fn, args, result_bytes in ((grad.conv2d_grad_filter, (x, dy, w.shape), w.nbytes),
                                   (grad.conv2d_grad_input, (dy, w, x.shape), 2 * x.nbytes)):
        tracemalloc.start()
        fn(*args, padding="SAME")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # the result (grad_input: its zero-padded buffer and the cropped copy) plus a few chunk buffers
        assert peak < result_bytes + 4 * reference._CHUNK_BYTES + (1 << 20), (fn.__name__, peak)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: grad.conv2d_grad_input(np.ones((1, 3, 3, 2)), np.ones((3, 3, 1, 2)), (1, 3, 3)), "input_shape must be 4"),
    (lambda: grad.conv2d_grad_input(np.ones((1, 3, 3, 2)), np.ones((3, 3, 2, 2)), (1, 3, 3, 1)), "channel mismatch"),
    (lambda: grad.conv2d_grad_input(np.ones((1, 2, 2, 2)), np.ones((3, 3, 1, 2)), (1, 3, 3, 1)),
     r"dy must have the forward output shape \(1, 3, 3, 2\)"),
    (lambda: grad.conv2d_grad_filter(np.ones((1, 3, 3, 4)), np.ones((1, 3, 3, 3)), (3, 3, 2, 3), groups=2),
     "groups must divide c_out"),
    (lambda: grad.conv2d_grad_filter(np.ones((1, 3, 3, 1)), np.ones((1, 3, 3, 1)), (3, 3, 1, 1), strides=0),
     "strides must be positive"),
    (lambda: grad.conv2d_grad_filter(np.ones((1, 3, 3, 1)), np.ones((1, 3, 3, 1)), (3, 3, 1, 1), padding="FULL"),
     "padding must be"),
    (lambda: grad.conv2d_transpose(np.ones((1, 3, 3, 1)), np.ones((3, 3, 1, 1)), (1, 7, 7, 1), strides=2),
     r"y must have the forward output shape \(1, 4, 4, 1\)"),  # 7 maps to 4 outputs, not 3
    (lambda: grad.conv2d_grad_bias(np.ones((3, 3))), "dy must be NHWC"),
    (lambda: grad.conv2d_grad_input(np.ones((1, 3, 3, 1)), np.ones((3, 3, 1, 1)), (1, 3, 3, 1), groups=0),
     "groups must be a positive integer"),
])
def test_bad_arguments_name_the_problem(call, message):
    with pytest.raises(SpecError, match=message):
        call()
