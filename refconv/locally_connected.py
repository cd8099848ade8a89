"""A locally connected layer: a convolution without weight sharing, one filter per output position.

Weight layout (refconv's, documented here once): ``w`` has shape (Ho, Wo, kh, kw, c_in, c_out);
``w[r, c]`` is the HWIO filter used at output pixel (r, c). The bias is either shared, shape
(c_out,), or per position, shape (Ho, Wo, c_out) (Keras' LocallyConnected2D layout). Geometry
(output size and padding, SAME/VALID/explicit) comes from `refconv.padding`, as for conv2d, so with
the same filter at every position the layer equals `refconv.conv2d`.

>>> import numpy as np
>>> x = np.arange(9.0).reshape(1, 3, 3, 1)                       # one 3x3 image
>>> w = np.zeros((2, 2, 2, 2, 1, 1)); w[0, 0] = 1.0; w[1, 1] = -1.0   # two positions used
>>> locally_connected2d(x, w, None, strides=1, padding="VALID")[0, :, :, 0]
array([[  8.,   0.],
       [  0., -24.]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refconv.padding import Axis, _geometry
from refconv.spec import SpecError, _pair, normalize_padding


def shared_filter(w_hwio: Any, output_hw: tuple[int, int]) -> np.ndarray:
    """The locally connected weights that hold one HWIO filter at every output position."""
    w = np.asarray(w_hwio)
    if w.ndim != 4:
        raise SpecError(f"w_hwio must be HWIO (rank 4), got shape {w.shape}")
    return np.broadcast_to(w, (*output_hw, *w.shape)).copy()


def _check(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: Any, padding: Any) -> tuple[Axis, Axis, Any]:
    if x.ndim != 4:
        raise SpecError(f"x must be NHWC (rank 4), got shape {x.shape}")
    if w.ndim != 6:
        raise SpecError(f"w must be (Ho, Wo, kh, kw, c_in, c_out) (rank 6), got shape {w.shape}")
    if w.shape[4] != x.shape[3]:
        raise SpecError(f"channel mismatch: x has {x.shape[3]} channels, w expects {w.shape[4]}")
    if w.shape[2] == 0 or w.shape[3] == 0:
        raise SpecError(f"kernel must be at least 1x1, got shape {w.shape}")
    s = _pair("strides", strides)
    rows, cols = _geometry(normalize_padding(padding), x.shape[1], x.shape[2], w.shape[2], w.shape[3], s, (1, 1))
    if (rows.out, cols.out) != w.shape[:2]:
        raise SpecError(
            f"w holds filters for a {w.shape[0]}x{w.shape[1]} output, but this input, stride and padding "
            f"give a {rows.out}x{cols.out} output"
        )
    c_out = w.shape[5]
    if b is not None and b.shape not in ((c_out,), (rows.out, cols.out, c_out)):
        raise SpecError(f"bias must have shape ({c_out},) or ({rows.out}, {cols.out}, {c_out}), got {b.shape}")
    return rows, cols, s


def _pad(x: np.ndarray, rows: Axis, cols: Axis) -> np.ndarray:
    return np.pad(x, ((0, 0), (rows.before, rows.after), (cols.before, cols.after), (0, 0)))


def locally_connected2d(x: Any, w: Any, b: Any = None, strides: Any = 1, padding: Any = "VALID") -> np.ndarray:
    """Locally connected layer in float64: NHWC x, w (Ho, Wo, kh, kw, c_in, c_out); returns NHWC."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    b = None if b is None else np.asarray(b, dtype=np.float64)
    rows, cols, (sh, sw) = _check(x, w, b, strides, padding)
    ho, wo, kh, kw = w.shape[:4]
    out = np.zeros((x.shape[0], ho, wo, w.shape[5]))
    if out.size:
        xp = _pad(x, rows, cols)
        for i in range(kh):  # one kernel offset at a time: patch (n, ho, wo, c_in) against w[:, :, i, j]
            for j in range(kw):
                patch = xp[:, i: i + (ho - 1) * sh + 1: sh, j: j + (wo - 1) * sw + 1: sw, :]
                out += np.einsum("nhwc,hwco->nhwo", patch, w[:, :, i, j])
    if b is not None:
        out += b
    return out


def locally_connected2d_direct(x: Any, w: Any, b: Any = None, strides: Any = 1, padding: Any = "VALID") -> np.ndarray:
    """The literal loop over output pixels and channels: slow, obviously right, for small cases."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    b = None if b is None else np.asarray(b, dtype=np.float64)
    rows, cols, (sh, sw) = _check(x, w, b, strides, padding)
    ho, wo, kh, kw, _, c_out = w.shape
    xp = _pad(x, rows, cols)
    out = np.zeros((x.shape[0], ho, wo, c_out))
    for n in range(x.shape[0]):
        for r in range(ho):
            for c in range(wo):
                window = xp[n, r * sh: r * sh + kh, c * sw: c * sw + kw, :]
                for o in range(c_out):
                    out[n, r, c, o] = np.sum(window * w[r, c, :, :, :, o])
                    if b is not None:
                        out[n, r, c, o] += b[o] if b.ndim == 1 else b[r, c, o]
    return out
