"""Layer arithmetic a learner asks about first: how many parameters, and what output shape.

Parameter counts (SEMANTICS.md): a convolution with bias has (kh * kw * c_in / groups + 1) * c_out
parameters (the +1 is the bias); a locally connected layer has one filter and one bias per output
position, so Ho * Wo times that (groups 1).

>>> param_count(3, 3, 3, 64)                       # 3x3 conv, RGB in, 64 filters
1792
>>> param_count(3, 3, 32, 32, groups=32)           # depthwise 3x3 over 32 channels
320
>>> param_count(3, 3, 3, 2, output_hw=(4, 4))      # locally connected, 4x4 output
896
>>> output_shape(input_shape=(1, 6, 6, 3), kernel_shape=(3, 3, 3, 2), strides=2, padding="SAME")
(1, 3, 3, 2)
"""

from __future__ import annotations

from typing import Any

from refconv import padding as _padding
from refconv.spec import ConvSpec, SpecError, _pair, _positive, normalize_padding


def param_count(
    kh: int, kw: int, c_in: int, c_out: int, *, groups: int = 1, bias: bool = True,
    output_hw: tuple[int, int] | None = None,
) -> int:
    """Trainable parameters of a conv layer; with output_hw, of a locally connected layer of that output size."""
    for name, value in (("kh", kh), ("kw", kw), ("c_in", c_in), ("c_out", c_out), ("groups", groups)):
        _positive(name, value)
    if c_in % groups or c_out % groups:
        raise SpecError(f"groups must divide c_in and c_out, got groups={groups} with c_in={c_in}, c_out={c_out}")
    per_filter = kh * kw * (c_in // groups) + (1 if bias else 0)
    if output_hw is None:
        return per_filter * c_out
    if groups != 1:
        raise SpecError(f"a locally connected layer has no groups here, got groups={groups}")
    ho, wo = output_hw
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (ho, wo)):
        raise SpecError(f"output_hw must be non-negative integers, got {output_hw!r}")
    return per_filter * c_out * ho * wo


def param_count_of(spec: ConvSpec) -> int:
    """Parameters of the conv layer a case describes (bias counted when the case has one)."""
    return param_count(spec.kh, spec.kw, spec.c_in, spec.c_out, groups=spec.groups, bias=spec.bias)


def _shape(name: str, value: Any) -> tuple[int, int, int, int]:
    try:
        dims = tuple(value)
    except TypeError:
        raise SpecError(f"{name} must be 4 integers, got {value!r}") from None
    if len(dims) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise SpecError(f"{name} must be 4 positive integers, got {value!r}")
    return dims  # type: ignore[return-value]


def output_shape(
    spec: ConvSpec | None = None, *, input_shape: Any = None, kernel_shape: Any = None, strides: Any = 1,
    padding: Any = "SAME", dilations: Any = 1,
) -> tuple[int, int, int, int]:
    """NHWC output shape of a ConvSpec, or of input_shape (n, h, w, c) and HWIO kernel_shape (kh, kw, c/g, c_out).

    The group count is c / kernel_shape[2], as in TensorFlow.

    >>> output_shape(input_shape=(2, 7, 5, 4), kernel_shape=(3, 2, 2, 6), strides=(2, 1), padding="VALID")
    (2, 3, 4, 6)
    >>> output_shape(ConvSpec(n=1, h=4, w=4, c_in=1, c_out=1, kh=2, kw=2, strides=2))
    (1, 2, 2, 1)
    """
    if spec is not None:
        if not isinstance(spec, ConvSpec):
            raise SpecError(f"output_shape takes a ConvSpec or keywords, got {type(spec).__name__}")
        if input_shape is not None or kernel_shape is not None:
            raise SpecError("output_shape takes a ConvSpec or input_shape/kernel_shape keywords, not both")
        return _padding.output_shape(spec)
    if input_shape is None or kernel_shape is None:
        raise SpecError(
            "output_shape needs a ConvSpec, or both input_shape=(n, h, w, c) and kernel_shape=(kh, kw, c/g, c_out)"
        )
    n, h, w, c = _shape("input_shape", input_shape)
    kh, kw, cg, c_out = _shape("kernel_shape", kernel_shape)
    if c % cg or c_out % (c // cg):
        raise SpecError(
            f"kernel_shape {tuple(kernel_shape)} does not fit {c} input channels (groups = c / kernel_shape[2])"
        )
    rows, cols = _padding._geometry(normalize_padding(padding), h, w, kh, kw, _pair("strides", strides),
                                    _pair("dilations", dilations))
    return (n, rows.out, cols.out, c_out)
