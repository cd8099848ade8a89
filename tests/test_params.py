"""Parameter counts and output shapes: SEMANTICS.md's formulas, Keras and PyTorch layer counts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refconv
from refconv import ConvSpec, output_shape, param_count
from refconv.errors import SpecError
from refconv.params import param_count_of


def test_literal_counts():
    assert param_count(3, 3, 3, 64) == (3 * 3 * 3 + 1) * 64 == 1792
    assert param_count(3, 3, 3, 64, bias=False) == 1728
    assert param_count(1, 1, 256, 64) == 257 * 64  # a 1x1 layer is a per-pixel matmul plus bias
    assert param_count(3, 3, 32, 64, groups=4) == (3 * 3 * 8 + 1) * 64
    assert param_count(3, 3, 32, 32, groups=32) == (9 + 1) * 32  # depthwise
    assert param_count(3, 3, 3, 2, output_hw=(4, 5)) == (27 + 1) * 2 * 20  # locally connected


def test_count_of_a_spec():
    spec = ConvSpec(n=1, h=8, w=8, c_in=4, c_out=6, kh=3, kw=2, groups=2, bias=False)
    assert param_count_of(spec) == 3 * 2 * 2 * 6


def test_locally_connected_count_is_the_size_of_its_weights():
    x = np.ones((1, 6, 5, 3))
    ho, wo = output_shape(input_shape=x.shape, kernel_shape=(3, 3, 3, 2), strides=2, padding="SAME")[1:3]
    w, b = np.ones((ho, wo, 3, 3, 3, 2)), np.ones((ho, wo, 2))  # the layout locally_connected2d documents
    assert refconv.locally_connected2d(x, w, b, strides=2, padding="SAME").shape == (1, ho, wo, 2)
    assert param_count(3, 3, 3, 2, output_hw=(ho, wo)) == w.size + b.size


LAYERS = dict(
    kh=st.integers(1, 5), kw=st.integers(1, 5), groups=st.sampled_from([1, 2, 3]),
    cin_per_group=st.integers(1, 4), cout_per_group=st.integers(1, 4), bias=st.booleans(),
)


@settings(max_examples=25, deadline=None)
@given(**LAYERS)
def test_matches_torch_conv2d(kh, kw, groups, cin_per_group, cout_per_group, bias):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    c_in, c_out = groups * cin_per_group, groups * cout_per_group
    layer = torch.nn.Conv2d(c_in, c_out, (kh, kw), groups=groups, bias=bias)
    assert param_count(kh, kw, c_in, c_out, groups=groups, bias=bias) == sum(p.numel() for p in layer.parameters())


@settings(max_examples=10, deadline=None)
@given(**LAYERS)
def test_matches_keras_conv2d(kh, kw, groups, cin_per_group, cout_per_group, bias):
    keras = pytest.importorskip("keras", reason="keras is not installed")
    c_in, c_out = groups * cin_per_group, groups * cout_per_group
    layer = keras.layers.Conv2D(c_out, (kh, kw), groups=groups, use_bias=bias)
    layer.build((None, 8, 8, c_in))
    assert param_count(kh, kw, c_in, c_out, groups=groups, bias=bias) == layer.count_params()


def test_output_shape_keywords_and_spec_agree():
    spec = ConvSpec(n=2, h=7, w=5, c_in=4, c_out=6, kh=3, kw=2, strides=(2, 1), padding="VALID", groups=2,
                    dilations=(1, 2))
    by_keywords = output_shape(input_shape=(2, 7, 5, 4), kernel_shape=(3, 2, 2, 6), strides=(2, 1), padding="valid",
                               dilations=(1, 2))
    # rows: ceil((7-3+1)/2) = 3; cols: k_eff = (2-1)*2+1 = 3, ceil((5-3+1)/1) = 3
    assert output_shape(spec) == by_keywords == (2, 3, 3, 6)
    assert refconv.output_shape is output_shape


def test_output_shape_hand_computed():
    # SAME: ceil(in/s); VALID smaller than the kernel: empty
    assert output_shape(input_shape=(1, 6, 6, 3), kernel_shape=(3, 3, 3, 2), strides=2) == (1, 3, 3, 2)
    assert output_shape(input_shape=(1, 2, 2, 1), kernel_shape=(3, 3, 1, 5), padding="VALID") == (1, 0, 0, 5)
    assert output_shape(input_shape=(1, 5, 5, 1), kernel_shape=(3, 3, 1, 1), padding=((1, 0), (0, 0))) == (1, 4, 3, 1)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: param_count(0, 3, 3, 4), "kh"),
        (lambda: param_count(3, 3, 3, 4, groups=2), "groups must divide"),
        (lambda: param_count(3, 3, 4, 4, groups=2, output_hw=(2, 2)), "locally connected"),
        (lambda: param_count(3, 3, 4, 4, output_hw=(-1, 2)), "output_hw"),
        (lambda: output_shape(), "needs a ConvSpec"),
        (lambda: output_shape(input_shape=(1, 5, 5), kernel_shape=(3, 3, 1, 1)), "input_shape"),
        (lambda: output_shape(input_shape=(1, 5, 5, 3), kernel_shape=(3, 3, 2, 1)), "does not fit"),
        (lambda: output_shape(input_shape=(1, 5, 5, 1), kernel_shape=(3, 3, 1, 1), strides=0), "strides"),
        (lambda: output_shape(input_shape=(1, 5, 5, 1), kernel_shape=(3, 3, 1, 1), padding="full"), "padding"),
        (lambda: output_shape("n1-5x5x1-k3x3x1-s1x1-same-f32"), "ConvSpec"),
    ],
)
def test_bad_arguments_name_the_problem(call, words):
    with pytest.raises(SpecError, match=words):
        call()
