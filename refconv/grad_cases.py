"""The transposed-conv geometry grid (case source `tgrid`): the ambiguity of the output size, per axis.

Several input sizes h give the same forward output size ho (tensorflow#2118), so a transposed conv has
to be told which one it maps back to: TF by `output_shape`, PyTorch and Keras by `output_padding`, ONNX
by pads, output_padding or output_shape, JAX by its padding. Along each axis this grid takes every
(kernel, stride, dilation) of AXES (stride 1..3, stride > kernel, dilation 2 and 3), every padding form
(SAME, VALID, explicit pads with even and odd totals) and, for ho in (2, 3), *every* h that maps to ho
(`refconv.grad_padding.sizes_for`). Row and column configurations are zipped (the column list rotated),
so each axis sees each configuration once; cases are tiny (1 image, 2 -> 2 channels, float32,
every seventh grouped) and check the `transpose` op.

>>> specs = tgrid_cases()
>>> len(specs) > 150, {s.op for s in specs}
(True, {'transpose'})
"""

from __future__ import annotations

from typing import Any

from refconv.grad_padding import sizes_for
from refconv.spec import ConvSpec

# (kernel, stride, dilation) per axis: plain strides, stride > kernel, dilated kernels
AXES = [(k, s, 1) for k in (1, 2, 3, 4) for s in (1, 2, 3)] + [(2, 4, 1), (3, 5, 1), (2, 1, 2), (3, 2, 2), (3, 1, 3)]
EXPLICIT = [(1, 1), (0, 1), (1, 0), (2, 1)]  # even and odd totals, the extra pixel before or after
FORWARD_SIZES = (2, 3)


def _axis_cases(padding: Any) -> list[tuple[int, int, int, int, Any]]:
    """(h, k, s, d, pad) along one axis for one padding form: every h of each (k, s, d, ho)."""
    out: list[tuple[int, int, int, int, Any]] = []
    for i, (k, s, d) in enumerate(AXES):
        ho = FORWARD_SIZES[i % len(FORWARD_SIZES)]
        pads: list[Any] = [padding] if padding != "EXPLICIT" else EXPLICIT
        for pad in pads:
            out.extend((h, k, s, d, pad) for h in sizes_for(ho, k, s, d, pad))
    return out


def tgrid_cases(count: int | None = None) -> list[ConvSpec]:
    """The grid's transpose cases (the first `count` when given)."""
    specs: dict[str, ConvSpec] = {}
    for padding in ("SAME", "VALID", "EXPLICIT"):
        rows = _axis_cases(padding)
        cols = rows[len(rows) // 3:] + rows[: len(rows) // 3]
        for j, ((h, kh, sh, dh, ph), (w, kw, sw, dw, pw)) in enumerate(zip(rows, cols, strict=True)):
            spec = ConvSpec(
                n=1, h=h, w=w, c_in=2, c_out=2, kh=kh, kw=kw, strides=(sh, sw), dilations=(dh, dw),
                padding=padding if padding != "EXPLICIT" else (ph, pw), groups=2 if j % 7 == 3 else 1,
                op="transpose", seed=j + 1, name=f"tgrid_{padding.lower()}_{j}",
            )
            specs.setdefault(spec.id, spec)
    out = list(specs.values())
    return out if count is None else out[:count]
