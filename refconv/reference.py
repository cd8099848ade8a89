"""The float64 reference conv2d: a literal direct loop (the oracle's oracle) and the fast path.

Conventions (SEMANTICS.md): x is NHWC, w is HWIO, b has shape (c_out,). The kernel is applied
without flipping (cross-correlation). With groups g, w follows TensorFlow's grouped HWIO layout
(kh, kw, c_in / g, c_out): output channel o belongs to group o // (c_out / g) and sees input
channels [g * c_in/g, (g + 1) * c_in/g). Padding follows `refconv.padding`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from refconv.padding import Axis, _geometry
from refconv.spec import SpecError, _pair, normalize_padding


class Geometry(NamedTuple):
    rows: Axis
    cols: Axis
    strides: tuple[int, int]
    dilations: tuple[int, int]
    groups: int


def _check(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: Any, padding: Any, dilations: Any, groups: Any,
    activation: Any,
) -> Geometry:
    """Validate arguments up front, naming the problem, and return the geometry."""
    x, w = np.asarray(x), np.asarray(w)
    if x.ndim != 4:
        raise SpecError(f"x must be NHWC (rank 4), got shape {x.shape}")
    if w.ndim != 4:
        raise SpecError(f"w must be HWIO (rank 4), got shape {w.shape}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups <= 0:
        raise SpecError(f"groups must be a positive integer, got {groups!r}")
    if w.shape[2] * groups != x.shape[3]:
        raise SpecError(
            f"channel mismatch: x has {x.shape[3]} channels, w expects {w.shape[2]} per group x {groups} groups"
        )
    if w.shape[3] % groups:
        raise SpecError(f"groups must divide c_out, got groups={groups} with c_out={w.shape[3]}")
    if w.shape[0] == 0 or w.shape[1] == 0:
        raise SpecError(f"kernel must be at least 1x1, got shape {w.shape}")
    if b is not None and np.shape(b) != (w.shape[3],):
        raise SpecError(f"bias must have shape ({w.shape[3]},), got {np.shape(b)}")
    if activation not in (None, "relu"):
        raise SpecError(f"activation must be None or 'relu', got {activation!r}")
    strides, dilations = _pair("strides", strides), _pair("dilations", dilations)
    rows, cols = _geometry(normalize_padding(padding), x.shape[1], x.shape[2], w.shape[0], w.shape[1], strides, dilations)
    return Geometry(rows, cols, strides, dilations, groups)


def _pad(x: np.ndarray, g: Geometry) -> np.ndarray:
    return np.pad(x, ((0, 0), (g.rows.before, g.rows.after), (g.cols.before, g.cols.after), (0, 0)))


def _finish(out: np.ndarray, b: np.ndarray | None, activation: str | None) -> np.ndarray:
    if b is not None:
        out += np.asarray(b, dtype=out.dtype)
    if activation == "relu":
        np.maximum(out, 0, out=out)
    return out


def conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, strides: Any = 1, padding: Any = "SAME",
    dilations: Any = 1, groups: int = 1, activation: str | None = None,
) -> np.ndarray:
    """Reference conv2d in float64 (the fast path). NHWC x, HWIO w; returns NHWC float64.

    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)          # one 4x4 image
    >>> conv2d(x, np.ones((2, 2, 1, 1)), strides=2, padding="SAME")[0, :, :, 0]
    array([[10., 18.],
           [42., 50.]])
    """
    g = _check(x, w, b, strides, padding, dilations, groups, activation)
    return conv2d_fast(
        np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64),
        None if b is None else np.asarray(b, dtype=np.float64), g, activation,
    )


def conv2d_fast(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry, activation: str | None = None
) -> np.ndarray:
    """Accumulate one GEMM per kernel offset, in the dtype of x (float64 for the reference)."""
    n, c_in = x.shape[0], x.shape[3]
    kh, kw, cg, c_out = w.shape
    ho, wo = g.rows.out, g.cols.out
    (sh, sw), (dh, dw), groups = g.strides, g.dilations, g.groups
    og = c_out // groups
    out = np.zeros((n, ho, wo, groups, og), dtype=x.dtype)
    if out.size:
        xp = _pad(x, g)
        wg = w.reshape(kh, kw, cg, groups, og).transpose(0, 1, 3, 2, 4)  # kh, kw, G, cg, og
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw, :]
                patch = patch.reshape(n, ho, wo, groups, 1, cg)
                out += np.matmul(patch, wg[i, j])[..., 0, :]
    return _finish(out.reshape(n, ho, wo, c_out), b, activation)


def conv2d_direct(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, strides: Any = 1, padding: Any = "SAME",
    dilations: Any = 1, groups: int = 1, activation: str | None = None,
) -> np.ndarray:
    """The literal loop over output pixels, in float64: slow, obviously right, for small cases."""
    g = _check(x, w, b, strides, padding, dilations, groups, activation)
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    kh, kw, cg, c_out = w.shape
    og = c_out // groups
    (sh, sw), (dh, dw) = g.strides, g.dilations
    xp = _pad(x, g)
    out = np.zeros((x.shape[0], g.rows.out, g.cols.out, c_out))
    for n in range(out.shape[0]):
        for r in range(out.shape[1]):
            for c in range(out.shape[2]):
                for o in range(c_out):
                    first = (o // og) * cg
                    window = xp[n, r * sh: r * sh + (kh - 1) * dh + 1: dh, c * sw: c * sw + (kw - 1) * dw + 1: dw,
                                first: first + cg]
                    out[n, r, c, o] = np.sum(window * w[:, :, :, o])
    return _finish(out, None if b is None else np.asarray(b, dtype=np.float64), activation)


def abs_bound(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, strides: Any = 1, padding: Any = "SAME",
    dilations: Any = 1, groups: int = 1,
) -> np.ndarray:
    """|x| conv |w| + |b|: the magnitude every output's rounding error scales with."""
    return conv2d(np.abs(np.asarray(x, dtype=np.float64)), np.abs(np.asarray(w, dtype=np.float64)),
                  None if b is None else np.abs(np.asarray(b, dtype=np.float64)),
                  strides, padding, dilations, groups)


def for_spec(spec: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(expected, bound) of a ConvSpec's inputs: two fast-path convolutions in float64."""
    args = (spec.strides, spec.padding, spec.dilations, spec.groups)
    return conv2d(x, w, b, *args, activation=spec.activation), abs_bound(x, w, b, *args)
