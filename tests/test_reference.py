"""The reference: literal hand-checked cases, agreement with the direct loop, and bad arguments."""

import numpy as np
import pytest

import refconv
from refconv.reference import abs_bound, conv2d, conv2d_direct

BOTH = pytest.mark.parametrize("conv", [conv2d, conv2d_direct], ids=["fast", "direct"])


@BOTH
def test_cross_correlation_not_convolution(conv):
    x = np.zeros((1, 3, 3, 1))  # one 3x3 image with a single 1 in the centre
    x[0, 1, 1, 0] = 1.0
    w = np.arange(9.0).reshape(3, 3, 1, 1)  # kernel 0..8, row-major
    out = conv(x, w, padding="SAME")[0, :, :, 0]
    # out[i, j] = sum x[i+a-1, j+b-1] * w[a, b]: the centre 1 meets w[2-i, 2-j] (not flipped)
    assert out.tolist() == [[8.0, 7.0, 6.0], [5.0, 4.0, 3.0], [2.0, 1.0, 0.0]]


@BOTH
def test_same_even_kernel_stride2_hand_computed(conv):
    x = np.arange(16.0).reshape(1, 4, 4, 1)  # rows 0-3, 4-7, 8-11, 12-15
    w = np.ones((2, 2, 1, 1))
    # SAME, k=2, s=2, in=4: out=2, total=max(1*2+2-4, 0)=0: plain 2x2 blocks summed
    assert conv(x, w, strides=2, padding="SAME")[0, :, :, 0].tolist() == [[10.0, 18.0], [42.0, 50.0]]


@BOTH
def test_same_odd_total_puts_the_extra_zero_after(conv):
    x = np.arange(1.0, 7.0).reshape(1, 1, 6, 1)  # one row: 1..6
    w = np.ones((1, 3, 1, 1))
    # SAME, k=3, s=2, in=6: out=3, total=1 -> left 0, right 1: windows [1,2,3], [3,4,5], [5,6,0]
    assert conv(x, w, strides=(1, 2), padding="SAME")[0, 0, :, 0].tolist() == [6.0, 12.0, 11.0]


@BOTH
def test_bias_then_relu(conv):
    x = np.array([1.0, -2.0]).reshape(1, 1, 2, 1)
    w = np.ones((1, 1, 1, 2))
    b = np.array([0.5, 3.0])
    out = conv(x, w, b, padding="VALID", activation="relu")[0, 0]
    assert out.tolist() == [[1.5, 4.0], [0.0, 1.0]]


@BOTH
def test_groups_follow_tf_hwio_layout(conv):
    # 2 groups, c_in 2, c_out 2: output o sees only input channel o
    x = np.array([[[[1.0, 10.0]]]])  # (1, 1, 1, 2)
    w = np.array([2.0, 3.0]).reshape(1, 1, 1, 2)  # (kh, kw, c_in/groups=1, c_out)
    assert conv(x, w, padding="VALID", groups=2)[0, 0, 0].tolist() == [2.0, 30.0]


@BOTH
def test_dilation_hand_computed(conv):
    x = np.arange(1.0, 6.0).reshape(1, 1, 5, 1)  # 1..5
    w = np.array([1.0, 10.0]).reshape(1, 2, 1, 1)
    # dilation 3: y[j] = x[j] + 10 * x[j+3]
    assert conv(x, w, padding="VALID", dilations=3)[0, 0, :, 0].tolist() == [41.0, 52.0]


@BOTH
@pytest.mark.parametrize(("h", "k"), [(2, 3), (1, 3), (2, 7)])
def test_valid_input_smaller_than_kernel_is_empty_not_an_error(conv, h, k):
    out = conv(np.ones((1, h, h, 2)), np.ones((k, k, 2, 3)), padding="VALID")
    assert out.shape == (1, 0, 0, 3) and out.dtype == np.float64


@BOTH
def test_explicit_padding(conv):
    x = np.ones((1, 1, 2, 1))
    w = np.ones((1, 3, 1, 1))
    # pads left 2, right 0: row [0, 0, 1, 1] -> windows [0,0,1], [0,1,1]
    assert conv(x, w, padding=((0, 0), (2, 0)))[0, 0, :, 0].tolist() == [1.0, 2.0]


def test_fast_path_equals_direct_loop_on_the_edge_corpus():
    from refconv.cases import edge_cases
    from refconv.inputs import make_inputs

    for spec in edge_cases():
        x, w, b = make_inputs(spec)
        args = (spec.strides, spec.padding, spec.dilations, spec.groups, spec.activation)
        fast, direct = conv2d(x, w, b, *args), conv2d_direct(x, w, b, *args)
        assert fast.shape == direct.shape, spec.id
        np.testing.assert_allclose(fast, direct, rtol=1e-12, atol=1e-12, err_msg=spec.id)


def test_returns_float64_for_any_input_dtype():
    assert conv2d(np.ones((1, 3, 3, 1), np.float32), np.ones((3, 3, 1, 1), np.float16)).dtype == np.float64


def test_abs_bound_is_the_conv_of_absolute_values():
    x = np.array([1.0, -2.0, 3.0]).reshape(1, 1, 3, 1)
    w = np.array([-1.0, 1.0]).reshape(1, 2, 1, 1)
    b = np.array([-0.5])
    assert abs_bound(x, w, b, padding="VALID")[0, 0, :, 0].tolist() == [3.5, 5.5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": np.ones((3, 3, 1))}, r"x must be NHWC \(rank 4\), got shape \(3, 3, 1\)"),
        ({"w": np.ones((3, 3, 1))}, r"w must be HWIO \(rank 4\)"),
        ({"w": np.ones((3, 3, 2, 1))}, "channel mismatch: x has 1 channels, w expects 2"),
        ({"b": np.ones(3)}, r"bias must have shape \(1,\), got \(3,\)"),
        ({"strides": 0}, r"strides must be positive integers, got \(0, 0\)"),
        ({"strides": (1, -2)}, r"strides must be positive integers, got \(1, -2\)"),
        ({"padding": "FULL"}, "padding must be 'SAME', 'VALID'"),
        ({"dilations": (0, 1)}, "dilations must be positive integers"),
        ({"groups": 2}, "channel mismatch"),
        ({"activation": "tanh"}, "activation must be None or 'relu'"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    args = {"x": np.ones((1, 4, 4, 1)), "w": np.ones((3, 3, 1, 1)), "b": None, **kwargs}
    with pytest.raises(ValueError, match=message):
        refconv.conv2d(**args)
