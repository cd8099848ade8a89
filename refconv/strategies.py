"""Public hypothesis strategies for ConvSpec and its inputs; every draw is labelled and shrinks to small cases.

>>> from hypothesis import given
>>> @given(specs(max_side=6))
... def test_output_fits(spec):
...     assert spec.h <= 6
>>> test_output_fits()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refconv.errors import SpecError
from refconv.inputs import np_dtype
from refconv.padding import output_hw
from refconv.spec import DTYPES, LAYOUTS, ConvSpec

# Named size caps: the defaults keep one example well under a millisecond in every engine.
MAX_BATCH = 3
MAX_SIDE = 12
MAX_KERNEL = 5
MAX_STRIDE = 4
MAX_DILATION = 3
MAX_CHANNELS = 8
MAX_PAD = 6
MAX_ABS_VALUE = 4.0  # input values lie in [-MAX_ABS_VALUE, MAX_ABS_VALUE]: no overflow even in float16
PADDING_KINDS = ("SAME", "VALID", "EXPLICIT")


def _check_cap(name: str, value: int, lowest: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        raise SpecError(f"{name} must be an integer >= {lowest}, got {value!r}")


def _check_choices(name: str, values: Sequence[Any], allowed: Sequence[Any]) -> tuple[Any, ...]:
    values = tuple(values)
    if not values or any(v not in allowed for v in values):
        raise SpecError(f"{name} must be a non-empty selection of {list(allowed)}, got {list(values)!r}")
    return values


@st.composite
def _specs(
    draw: Any, max_batch: int, max_side: int, max_kernel: int, max_stride: int, max_dilation: int,
    max_channels: int, max_pad: int, paddings: tuple[str, ...], dtypes: tuple[str, ...],
    layouts: tuple[str, ...], groups: bool, activations: bool, allow_empty: bool,
) -> ConvSpec:
    # Earlier choices shrink first: small sizes, stride 1, SAME, float32-first orders.
    n = draw(st.integers(1, max_batch), label="n")
    h = draw(st.integers(1, max_side), label="h")
    w = draw(st.integers(1, max_side), label="w")
    kh = draw(st.integers(1, max_kernel), label="kh")
    kw = draw(st.integers(1, max_kernel), label="kw")
    strides = (draw(st.integers(1, max_stride), label="sh"), draw(st.integers(1, max_stride), label="sw"))
    dilations = (draw(st.integers(1, max_dilation), label="dh"), draw(st.integers(1, max_dilation), label="dw"))
    kind = draw(st.sampled_from(paddings), label="padding")
    padding: Any = kind
    if kind == "EXPLICIT":
        pad = st.integers(0, max_pad)
        padding = ((draw(pad, label="pad_top"), draw(pad, label="pad_bottom")),
                   (draw(pad, label="pad_left"), draw(pad, label="pad_right")))
    g = draw(st.integers(1, max_channels), label="groups") if groups else 1
    c_in = g * draw(st.integers(1, max(1, max_channels // g)), label="c_in_per_group")
    c_out = g * draw(st.integers(1, max(1, max_channels // g)), label="c_out_per_group")
    spec = ConvSpec(
        n=n, h=h, w=w, c_in=c_in, c_out=c_out, kh=kh, kw=kw, strides=strides, padding=padding,
        dilations=dilations, groups=g,
        bias=draw(st.booleans(), label="bias"),
        dtype=draw(st.sampled_from(dtypes), label="dtype"),
        layout=draw(st.sampled_from(layouts), label="layout"),
        activation=draw(st.sampled_from([None, "relu"]), label="activation") if activations else None,
        seed=draw(st.integers(0, 2**16), label="seed"),
    )
    if not allow_empty:
        assume(0 not in output_hw(spec))
    return spec


def specs(
    *, max_batch: int = MAX_BATCH, max_side: int = MAX_SIDE, max_kernel: int = MAX_KERNEL,
    max_stride: int = MAX_STRIDE, max_dilation: int = MAX_DILATION, max_channels: int = MAX_CHANNELS,
    max_pad: int = MAX_PAD, paddings: Sequence[str] = PADDING_KINDS, dtypes: Sequence[str] = ("float32",),
    layouts: Sequence[str] = ("NHWC",), groups: bool = True, activations: bool = True, allow_empty: bool = True,
) -> st.SearchStrategy[ConvSpec]:
    """ConvSpecs within named caps; bad bounds raise SpecError at once, naming the argument."""
    for name, value in (("max_batch", max_batch), ("max_side", max_side), ("max_kernel", max_kernel),
                        ("max_stride", max_stride), ("max_dilation", max_dilation),
                        ("max_channels", max_channels)):
        _check_cap(name, value)
    _check_cap("max_pad", max_pad, lowest=0)
    return _specs(
        max_batch, max_side, max_kernel, max_stride, max_dilation, max_channels, max_pad,
        _check_choices("paddings", paddings, PADDING_KINDS), _check_choices("dtypes", dtypes, DTYPES),
        _check_choices("layouts", layouts, LAYOUTS), bool(groups), bool(activations), bool(allow_empty),
    )


def _array(dtype: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Values in [-MAX_ABS_VALUE, MAX_ABS_VALUE], exactly representable in `dtype`; shrinks towards zeros."""
    if dtype in ("float32", "float64", "float16"):
        width: Literal[16, 32, 64] = 16 if dtype == "float16" else 32 if dtype == "float32" else 64
        elements = st.floats(-MAX_ABS_VALUE, MAX_ABS_VALUE, width=width, allow_subnormal=False)
        return hnp.arrays(np.dtype(dtype), shape, elements=elements)
    # bfloat16: no native hypothesis support; draw float32 and round, which is exact afterwards.
    elements = st.floats(-MAX_ABS_VALUE, MAX_ABS_VALUE, width=32, allow_subnormal=False)
    return hnp.arrays(np.float32, shape, elements=elements).map(lambda a: a.astype(np_dtype(dtype)))


@st.composite
def _inputs(draw: Any, spec: ConvSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x = draw(_array(spec.dtype, spec.input_shape), label="x")
    w = draw(_array(spec.dtype, spec.kernel_shape), label="w")
    b = draw(_array(spec.dtype, (spec.c_out,)), label="b") if spec.bias else None
    return x, w, b


def inputs(spec: ConvSpec) -> st.SearchStrategy[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(x NHWC, w HWIO, b or None) in the spec's dtype, drawn by hypothesis (shrinks to zeros)."""
    if not isinstance(spec, ConvSpec):
        raise SpecError(f"inputs() needs a ConvSpec, got {type(spec).__name__}")
    return _inputs(spec)
