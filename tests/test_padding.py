"""Padding rules against hand-computed literal cases, and each framework translation."""

import pytest

from refconv import ConvSpec
from refconv.padding import Axis, axis, for_jax, for_onnx, for_tf, for_torch, geometry, output_shape


# (padding, in, k, s, d) -> (out, before, after), each computed by hand from SEMANTICS.md
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("SAME", 6, 3, 2, 1), (3, 0, 1)),   # out=ceil(6/2)=3, total=(3-1)*2+3-6=1: odd, extra after
        (("SAME", 5, 3, 2, 1), (3, 1, 1)),   # total=(3-1)*2+3-5=2
        (("SAME", 5, 3, 1, 1), (5, 1, 1)),
        (("SAME", 5, 2, 1, 1), (5, 0, 1)),   # even kernel: total 1
        (("SAME", 7, 4, 1, 1), (7, 1, 2)),   # total 3
        (("SAME", 4, 2, 2, 1), (2, 0, 0)),   # kernel == stride: no padding (the tutorial's crash)
        (("SAME", 5, 1, 1, 1), (5, 0, 0)),   # 1x1 kernel
        (("SAME", 2, 7, 1, 1), (2, 3, 3)),   # input smaller than kernel: total=(2-1)+7-2=6
        (("SAME", 2, 7, 2, 1), (1, 2, 3)),   # total=0+7-2=5
        (("SAME", 1, 3, 1, 1), (1, 1, 1)),   # 1-pixel input
        (("SAME", 9, 3, 1, 2), (9, 2, 2)),   # dilation 2: k_eff=5, total 4
        (("SAME", 4, 3, 1, 3), (4, 3, 3)),   # dilated kernel (k_eff=7) larger than input
        (("SAME", 8, 2, 1, 3), (8, 1, 2)),   # k_eff=4, total 3
        (("VALID", 6, 3, 2, 1), (2, 0, 0)),  # ceil((6-3+1)/2)=2
        (("VALID", 3, 3, 1, 1), (1, 0, 0)),  # input equals kernel
        (("VALID", 2, 3, 1, 1), (0, 0, 0)),  # input smaller by one: empty
        (("VALID", 2, 7, 1, 1), (0, 0, 0)),  # smaller by several: empty
        (("VALID", 4, 3, 1, 3), (0, 0, 0)),  # dilated kernel larger than input
        (("VALID", 10, 3, 4, 1), (2, 0, 0)),  # stride larger than kernel: ceil(8/4)
        (((2, 0), 6, 3, 1, 1), (6, 2, 0)),   # explicit: floor((6+2-3)/1)+1
        (((0, 2), 7, 3, 2, 1), (4, 0, 2)),   # floor((7+2-3)/2)+1
        (((4, 3), 4, 2, 1, 1), (10, 4, 3)),  # pads larger than the kernel
        (((1, 1), 1, 3, 1, 1), (1, 1, 1)),
        (((0, 1), 1, 3, 1, 1), (0, 0, 1)),   # explicit pads still too small: empty
    ],
)
def test_axis_rules_hand_computed(args, expected):
    assert axis(args[0], *args[1:]) == Axis(*expected)


def test_same_stride_larger_than_input_hand_computed():
    # in=3, k=3, s=5: out=ceil(3/5)=1; total=max((1-1)*5+3-3, 0)=0
    assert axis("SAME", 3, 3, 5) == Axis(1, 0, 0)


def test_geometry_and_output_shape_of_a_spec():
    s = ConvSpec(n=2, h=6, w=5, c_in=1, c_out=3, kh=3, kw=3, strides=(2, 2), padding="SAME")
    assert geometry(s) == (Axis(3, 0, 1), Axis(3, 1, 1))
    assert output_shape(s) == (2, 3, 3, 3)


def _spec(**kw):
    base = dict(n=1, h=6, w=6, c_in=1, c_out=1, kh=3, kw=3)
    return ConvSpec(**{**base, **kw})


def test_tf_translation():
    assert for_tf(_spec(padding="SAME")) == "SAME"
    assert for_tf(_spec(padding="VALID")) == "VALID"
    assert for_tf(_spec(padding=((1, 2), (0, 3)))) == [[0, 0], [1, 2], [0, 3], [0, 0]]
    assert for_tf(_spec(padding=((1, 2), (0, 3))), "NCHW") == [[0, 0], [0, 0], [1, 2], [0, 3]]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"padding": "VALID"}, (None, "valid")),
        ({"padding": "SAME"}, (None, "same")),  # stride 1: torch applies its own 'same'
        ({"padding": "SAME", "strides": (2, 2), "h": 5, "w": 5}, (None, (1, 1))),  # even totals: symmetric
        ({"padding": "SAME", "strides": (2, 2)}, ((0, 1, 0, 1), "valid")),  # odd totals: F.pad first
        ({"padding": ((1, 1), (2, 2))}, (None, (1, 2))),
        ({"padding": ((2, 0), (1, 0))}, ((1, 0, 2, 0), "valid")),
        ({"padding": "SAME", "strides": (3, 3), "dilations": (3, 3), "h": 4, "w": 4}, (None, (3, 3))),  # k_eff 7 > in 4
        ({"padding": "SAME", "strides": (3, 3), "dilations": (2, 2), "h": 5, "w": 5}, ((1, 2, 1, 2), "valid")),
    ],
)
def test_torch_translation(kw, expected):
    assert for_torch(_spec(**kw)) == expected


def test_torch_translation_reproduces_the_reference_padding():
    # Whatever torch is told, pre-padding plus symmetric padding must equal the reference's pads.
    for h in range(1, 9):
        for k in range(1, 6):
            for s in range(1, 5):
                for d in (1, 2, 3):
                    spec = _spec(h=h, w=h, kh=k, kw=k, strides=(s, s), dilations=(d, d), padding="SAME")
                    pre, pad = for_torch(spec)
                    rows, cols = geometry(spec)
                    if pad == "same":
                        total = (k - 1) * d
                        assert (rows.before, rows.after) == (total // 2, total - total // 2)
                    elif pre is not None:
                        assert pre == (cols.before, cols.after, rows.before, rows.after)
                    else:
                        assert pad == (rows.before, cols.before) and rows.before == rows.after


def test_jax_and_onnx_translations():
    assert for_jax(_spec(padding="SAME")) == "SAME"
    assert for_jax(_spec(padding=((1, 2), (0, 3)))) == [(1, 2), (0, 3)]
    assert for_onnx(_spec(padding="SAME")) == {"auto_pad": "SAME_UPPER"}
    assert for_onnx(_spec(padding="VALID")) == {"auto_pad": "VALID"}
    assert for_onnx(_spec(padding=((1, 2), (0, 3)))) == {"pads": [1, 0, 2, 3]}
