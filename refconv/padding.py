"""Output size and padding, written once, and their translation to each framework's arguments.

TensorFlow's rules (SEMANTICS.md), with the effective kernel (k - 1) * d + 1 everywhere:

- SAME: out = ceil(in / s); total = max((out - 1) * s + k_eff - in, 0);
  before = total // 2, after = total - before (an odd total puts the extra pixel after).
- VALID: out = ceil((in - k_eff + 1) / s), 0 when the input is smaller than the kernel.
- explicit (before, after): out = floor((in + before + after - k_eff) / s) + 1, or 0 if that window never fits.

>>> axis("SAME", size=6, k=3, s=2)
Axis(out=3, before=0, after=1)
>>> axis("VALID", size=2, k=3, s=1)
Axis(out=0, before=0, after=0)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from refconv.spec import ConvSpec, Padding, normalize_padding


class Axis(NamedTuple):
    """The geometry of one spatial axis: output size and the zero pixels before and after."""

    out: int
    before: int
    after: int


def effective_kernel(k: int, d: int = 1) -> int:
    """(k - 1) * d + 1: the span of a dilated kernel."""
    return (k - 1) * d + 1


def axis(padding: str | tuple[int, int], size: int, k: int, s: int, d: int = 1) -> Axis:
    """(out, before, after) along one axis for 'SAME', 'VALID' or an explicit (before, after)."""
    k_eff = effective_kernel(k, d)
    if padding == "SAME":
        out = -(-size // s)
        total = max((out - 1) * s + k_eff - size, 0)
        return Axis(out, total // 2, total - total // 2)
    if padding == "VALID":
        return Axis(max(-(-(size - k_eff + 1) // s), 0), 0, 0)
    assert not isinstance(padding, str), f"unknown padding {padding!r}"
    before, after = padding
    span = size + before + after - k_eff
    return Axis(span // s + 1 if span >= 0 else 0, before, after)


def geometry(spec: ConvSpec) -> tuple[Axis, Axis]:
    """(rows, cols) geometry of a case."""
    return _geometry(spec.padding, spec.h, spec.w, spec.kh, spec.kw, spec.strides, spec.dilations)


def _geometry(
    padding: Padding, h: int, w: int, kh: int, kw: int, strides: tuple[int, int], dilations: tuple[int, int]
) -> tuple[Axis, Axis]:
    padding = normalize_padding(padding)
    if isinstance(padding, str):
        rows_pad: Any = padding
        cols_pad: Any = padding
    else:
        rows_pad, cols_pad = padding
    return (
        axis(rows_pad, h, kh, strides[0], dilations[0]),
        axis(cols_pad, w, kw, strides[1], dilations[1]),
    )


def output_hw(spec: ConvSpec) -> tuple[int, int]:
    rows, cols = geometry(spec)
    return rows.out, cols.out


def output_shape(spec: ConvSpec) -> tuple[int, int, int, int]:
    """NHWC output shape of a case."""
    rows, cols = geometry(spec)
    return (spec.n, rows.out, cols.out, spec.c_out)


def explicit_pads(spec: ConvSpec) -> tuple[tuple[int, int], tuple[int, int]]:
    """The ((top, bottom), (left, right)) the reference applies, whatever the padding kind."""
    rows, cols = geometry(spec)
    return ((rows.before, rows.after), (cols.before, cols.after))


# --- translations: what each framework is told ---------------------------------------------


def for_tf(spec: ConvSpec, data_format: str = "NHWC") -> str | list[list[int]]:
    """tf.nn.conv2d `padding`: 'SAME', 'VALID', or the explicit list in data_format's order."""
    if isinstance(spec.padding, str):
        return spec.padding
    (t, b), (left, r) = spec.padding
    if data_format == "NCHW":
        return [[0, 0], [0, 0], [t, b], [left, r]]
    return [[0, 0], [t, b], [left, r], [0, 0]]


def for_torch(spec: ConvSpec) -> tuple[tuple[int, int, int, int] | None, str | tuple[int, int]]:
    """(F.pad argument or None, F.conv2d `padding`).

    PyTorch pads symmetrically, and refuses padding='same' for stride > 1. SAME at stride 1 is passed
    as 'same' (torch then applies its own rule, which is what we test); a symmetric case is passed as
    an int pair; anything asymmetric is zero-padded first with F.pad((left, right, top, bottom)) and
    then convolved VALID.
    """
    if spec.padding == "VALID":
        return None, "valid"
    if spec.padding == "SAME" and spec.strides == (1, 1):
        return None, "same"
    (t, b), (left, r) = explicit_pads(spec)
    if t == b and left == r:
        return None, (t, left)
    return (left, r, t, b), "valid"


def for_jax(spec: ConvSpec) -> str | list[tuple[int, int]]:
    """lax.conv_general_dilated `padding`: 'SAME' (odd pad after, as TF), 'VALID' or pairs."""
    if isinstance(spec.padding, str):
        return spec.padding
    (t, b), (left, r) = spec.padding
    return [(t, b), (left, r)]


def for_onnx(spec: ConvSpec) -> dict[str, Any]:
    """ONNX Conv attributes: auto_pad SAME_UPPER (TF's SAME) / VALID, or explicit pads."""
    if spec.padding == "SAME":
        return {"auto_pad": "SAME_UPPER"}
    if spec.padding == "VALID":
        return {"auto_pad": "VALID"}
    assert not isinstance(spec.padding, str)
    (t, b), (left, r) = spec.padding
    return {"pads": [t, left, b, r]}
