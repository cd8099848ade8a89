"""The transposed convolution's geometry, written once, and its translation to each framework's arguments.

A transposed conv maps a forward-output-shaped y back to the forward input's size h. Several h give the
same forward output size ho (tensorflow#2118), so each framework asks for the choice in its own terms.
Along one axis, with forward pads (t, b) as `refconv.padding` computes them, k_eff = (k - 1) * d + 1 and
the full transposed length L = (ho - 1) * s + k_eff (every padded input pixel some window read):

- TensorFlow: `output_shape` says h; `padding` is the forward padding (SAME, VALID or explicit pairs).
- PyTorch / Keras / ONNX: the output is L - 2p + output_padding (PyTorch, Keras: symmetric crop p), or
  L - pads_begin - pads_end + output_padding (ONNX). The reference crops t before, so the exact answer is
  p = t and output_padding = h + 2t - L = t - b + rem, where rem = (h + t + b - k_eff) mod s is the
  remainder the forward stride skipped; PyTorch accepts it when 0 <= output_padding < max(s, d).
  Otherwise (b > t + rem: asymmetric pads the symmetric crop cannot express) it is called with p = 0 and
  output_padding = max(rem - b, 0), and the result cropped to [t, t + h): the transposed twin of the
  F.pad that the forward adapter applies first.
- JAX: lax.conv_transpose's 'SAME' / 'VALID' give h = ho * s / ho * s + max(k_eff - s, 0); any other h
  takes `use_consistent_padding=True` with forward pairs (t, b - rem).

>>> from refconv.spec import ConvSpec
>>> torch_transpose(ConvSpec(n=1, h=6, w=6, c_in=1, c_out=1, kh=3, kw=3, strides=2))
TorchTranspose(padding=(0, 0), output_padding=(0, 0), crop=((0, 6), (0, 6)))
>>> torch_transpose(ConvSpec(n=1, h=5, w=5, c_in=1, c_out=1, kh=3, kw=3, strides=2))  # odd size: symmetric
TorchTranspose(padding=(1, 1), output_padding=(0, 0), crop=None)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from refconv.padding import effective_kernel, geometry
from refconv.spec import ConvSpec


class AxisT(NamedTuple):
    """One axis of a transposed conv: forward pads, forward output size, k_eff, stride, dilation, size h."""

    before: int
    after: int
    out: int
    k_eff: int
    stride: int
    dilation: int
    size: int

    @property
    def full(self) -> int:
        """L = (ho - 1) * s + k_eff: the length of the uncropped transposed output."""
        return (self.out - 1) * self.stride + self.k_eff

    @property
    def rem(self) -> int:
        """The padded input pixels past the last window (what the forward stride skipped)."""
        return self.size + self.before + self.after - self.full


def axes(spec: ConvSpec) -> tuple[AxisT, AxisT]:
    """(rows, cols) of a spec's transposed conv."""
    rows, cols = geometry(spec)
    return (
        AxisT(rows.before, rows.after, rows.out, effective_kernel(spec.kh, spec.dilations[0]), spec.strides[0],
              spec.dilations[0], spec.h),
        AxisT(cols.before, cols.after, cols.out, effective_kernel(spec.kw, spec.dilations[1]), spec.strides[1],
              spec.dilations[1], spec.w),
    )


def sizes_for(out: int, k: int, s: int, d: int, padding: Any) -> list[int]:
    """Every input size h (1..) whose forward output along one axis is `out`: the transposed conv's choices.

    >>> sizes_for(3, 3, 2, 1, "SAME"), sizes_for(3, 3, 2, 1, "VALID")
    ([5, 6], [7, 8])
    """
    from refconv.padding import axis

    hi = out * s + effective_kernel(k, d) + (sum(padding) if isinstance(padding, tuple) else 0) + 1
    return [h for h in range(1, hi + 1) if axis(padding, h, k, s, d).out == out]


class TorchTranspose(NamedTuple):
    """F.conv_transpose2d / nn.ConvTranspose2d arguments, and the crop ((top, bottom), (left, right)) if any."""

    padding: tuple[int, int]
    output_padding: tuple[int, int]
    crop: tuple[tuple[int, int], tuple[int, int]] | None


def _torch_axis(a: AxisT) -> tuple[int, int, tuple[int, int], bool]:
    """(padding, output_padding, crop (start, stop) of torch's output, native?) along one axis."""
    op = a.before - a.after + a.rem
    if 0 <= op < max(a.stride, a.dilation):
        return a.before, op, (0, a.size), True
    return 0, max(a.rem - a.after, 0), (a.before, a.before + a.size), False


def torch_transpose(spec: ConvSpec) -> TorchTranspose:
    """PyTorch's padding and output_padding for the spec's transposed conv (crop when they cannot say it)."""
    (pr, opr, cr, nr), (pc, opc, cc, nc) = (_torch_axis(a) for a in axes(spec))
    return TorchTranspose((pr, pc), (opr, opc), None if nr and nc else (cr, cc))


def keras_transpose(spec: ConvSpec) -> tuple[str, tuple[int, int]] | str:
    """Conv2DTranspose (padding, output_padding) giving the spec's size, or the reason it cannot.

    Keras' output size (keras.src.utils.conv_utils.deconv_output_length with output_padding given):
    (ho - 1) * s + k_eff - 2 * pad + output_padding, pad = k_eff // 2 for 'same', 0 for 'valid';
    Keras requires output_padding < stride.
    """
    if not isinstance(spec.padding, str):
        return "keras.layers.Conv2DTranspose takes padding 'same' or 'valid' only, not explicit pads"
    pads = []
    for a in axes(spec):
        crop = a.k_eff // 2 if spec.padding == "SAME" else 0
        op = a.size - (a.full - 2 * crop)
        if not 0 <= op < a.stride:
            return (f"Conv2DTranspose cannot give size {a.size} from {a.out} (output_padding {op} is not in "
                    f"[0, stride {a.stride}))")
        pads.append(op)
    return spec.padding.lower(), (pads[0], pads[1])


def jax_transpose(spec: ConvSpec) -> tuple[str | list[tuple[int, int]], bool]:
    """(padding, use_consistent_padding) for lax.conv_transpose giving the spec's size."""
    rows, cols = axes(spec)
    if spec.padding == "SAME" and all(a.size == a.out * a.stride for a in (rows, cols)):
        return "SAME", False
    if spec.padding == "VALID" and all(a.size == a.out * a.stride + max(a.k_eff - a.stride, 0) for a in (rows, cols)):
        return "VALID", False
    # an empty forward axis: lax dilates the 0-pixel y to 0 pixels, not to (0 - 1) * s + 1, so L is k_eff - 1
    return [(a.before, a.after - (a.rem if a.out else a.size + a.before + a.after - a.k_eff + 1))
            for a in (rows, cols)], True


def onnx_transpose(spec: ConvSpec) -> dict[str, Any]:
    """ONNX ConvTranspose attributes: SAME as auto_pad SAME_UPPER with output_shape, else pads + output_padding.

    ONNX's rule with output_shape: total = s * (ho - 1) + output_padding + k_eff - h, split as TF's SAME
    (floor(total / 2) before) under SAME_UPPER; that is the forward SAME total, so the crop is TF's.
    """
    rows, cols = axes(spec)
    if spec.padding == "SAME":  # output_padding where the stride skipped more than the padding (L < h)
        return {"auto_pad": "SAME_UPPER", "output_shape": [spec.h, spec.w],
                "output_padding": [max(a.size - a.full, 0) for a in (rows, cols)]}
    ends = [a.after - a.rem for a in (rows, cols)]
    extra = [max(-e, 0) for e in ends]
    return {"pads": [rows.before, cols.before, max(ends[0], 0), max(ends[1], 0)], "output_padding": extra}
