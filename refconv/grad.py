"""The float64 reference for training: conv2d's input and filter gradients, the bias gradient, and the
transposed convolution (the adjoint of conv2d with the same HWIO filter, TensorFlow's convention).

For y = conv2d(x, w) (NHWC x, HWIO w, any padding, stride, dilation and groups, as in `refconv.reference`)
and a gradient dy of y's shape:

- `conv2d_grad_input(dy, w, input_shape)` is dL/dx: every dy pixel scatters dy . w[i, j]^T back onto the
  input pixels its window read (padding pixels are dropped);
- `conv2d_grad_filter(x, dy, filter_shape)` is dL/dw: each tap (i, j) correlates the input it met with dy,
  a sum over n * ho * wo terms;
- `conv2d_grad_bias(dy)` sums dy over N, H and W;
- `conv2d_transpose(y, w, output_shape)` is `conv2d_grad_input(y, w, output_shape)`, the name the
  frameworks give it. `output_shape` picks one of the input sizes that map to y's size (docs/training.md).

The adjoint identity <conv2d(x, w), dy> = <x, grad_input(dy, w)> = <w, grad_filter(x, dy)> holds exactly
in real arithmetic (tests/test_grad.py). The fast paths work chunk by chunk like the forward fast path
(one GEMM per chunk, working memory near `_CHUNK_BYTES` beyond the arrays and the result); the `_direct`
twins are the literal loops, for small cases.

>>> dy = np.ones((1, 2, 2, 1))                      # forward output of a 3x3 input, 2x2 kernel, VALID
>>> conv2d_grad_input(dy, np.ones((2, 2, 1, 1)), (1, 3, 3, 1), padding="VALID")[0, :, :, 0]
array([[1., 2., 1.],
       [2., 4., 2.],
       [1., 2., 1.]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refconv.errors import SpecError
from refconv.padding import _geometry
from refconv.reference import Geometry, _chunk_shape, _padded_rows, _tap, real_values
from refconv.spec import _pair, normalize_padding

Shape = tuple[int, int, int, int]


def _shape(name: str, value: Any) -> Shape:
    """A 4-tuple of positive ints, or SpecError naming `name`."""
    try:
        shape = tuple(value)
    except TypeError:
        raise SpecError(f"{name} must be 4 positive integers, got {value!r}") from None
    if len(shape) != 4 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                                  for v in shape):
        raise SpecError(f"{name} must be 4 positive integers, got {value!r}")
    n, h, w, c = (int(v) for v in shape)
    return (n, h, w, c)


def _check(
    input_shape: Any, filter_shape: Any, dy: np.ndarray, strides: Any, padding: Any, dilations: Any, groups: Any,
    dy_name: str = "dy",
) -> tuple[Shape, Shape, Geometry]:
    """Validate a gradient's arguments up front, naming the problem; (input shape, filter shape, geometry)."""
    dy = real_values(dy_name, dy)  # a ragged list or text names the argument instead of a NumPy error
    xs, ws = _shape("input_shape", input_shape), _shape("filter_shape", filter_shape)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups <= 0:
        raise SpecError(f"groups must be a positive integer, got {groups!r}")
    if ws[2] * groups != xs[3]:
        raise SpecError(f"channel mismatch: input has {xs[3]} channels, filter expects {ws[2]} per group x {groups} "
                        "groups")
    if ws[3] % groups:
        raise SpecError(f"groups must divide c_out, got groups={groups} with c_out={ws[3]}")
    strides, dilations = _pair("strides", strides), _pair("dilations", dilations)
    rows, cols = _geometry(normalize_padding(padding), xs[1], xs[2], ws[0], ws[1], strides, dilations)
    want = (xs[0], rows.out, cols.out, ws[3])
    if np.ndim(dy) != 4 or tuple(np.shape(dy)) != want:
        raise SpecError(f"{dy_name} must have the forward output shape {want}, got {np.shape(dy)}")
    return xs, ws, Geometry(rows, cols, strides, dilations, groups)


def _f64(name: str, a: Any) -> np.ndarray:
    """A user's array in float64; SpecError naming it when it does not hold real numbers."""
    return np.asarray(real_values(name, a), dtype=np.float64)


def _array(name: str, a: Any, shape: Shape) -> np.ndarray:
    if tuple(np.shape(a)) != shape:
        raise SpecError(f"{name} must have shape {shape}, got {np.shape(a)}")
    return _f64(name, a)


def conv2d_grad_input(
    dy: np.ndarray, w: np.ndarray, input_shape: Any, strides: Any = 1, padding: Any = "SAME", dilations: Any = 1,
    groups: int = 1,
) -> np.ndarray:
    """dL/dx (float64, of `input_shape`) for y = conv2d(x, w) given dL/dy = dy."""
    w = real_values("w", w)  # before its shape is asked: a ragged list is a SpecError, not a NumPy error
    xs, ws, g = _check(input_shape, np.shape(w), dy, strides, padding, dilations, groups)
    return grad_input_fast(_f64("dy", dy), _array("w", w, ws), xs, g)


def conv2d_transpose(
    y: np.ndarray, w: np.ndarray, output_shape: Any, strides: Any = 1, padding: Any = "SAME", dilations: Any = 1,
    groups: int = 1,
) -> np.ndarray:
    """The transposed convolution: the adjoint of conv2d(., w) from y (forward-output shaped) to `output_shape`.

    `w` is the forward convolution's HWIO filter (kh, kw, c_out_of_this / groups, c_in_of_this), exactly
    tf.nn.conv2d_transpose's `filters`; `strides`, `padding` and `dilations` are the forward ones.
    """
    w = real_values("w", w)
    xs, ws, g = _check(output_shape, np.shape(w), y, strides, padding, dilations, groups, dy_name="y")
    return grad_input_fast(_f64("y", y), _array("w", w, ws), xs, g)


def conv2d_grad_filter(
    x: np.ndarray, dy: np.ndarray, filter_shape: Any, strides: Any = 1, padding: Any = "SAME", dilations: Any = 1,
    groups: int = 1,
) -> np.ndarray:
    """dL/dw (float64, HWIO of `filter_shape`) for y = conv2d(x, w) given dL/dy = dy."""
    x = real_values("x", x)
    xs, _, g = _check(np.shape(x), filter_shape, dy, strides, padding, dilations, groups)
    return grad_filter_fast(_array("x", x, xs), _f64("dy", dy), _shape("filter_shape", filter_shape),
                            g)


def conv2d_grad_bias(dy: np.ndarray) -> np.ndarray:
    """dL/db (float64, shape (c_out,)): dy summed over N, H and W."""
    dy = real_values("dy", dy)
    if np.ndim(dy) != 4:
        raise SpecError(f"dy must be NHWC (rank 4), got shape {np.shape(dy)}")
    return _f64("dy", dy).sum(axis=(0, 1, 2))


# --- the fast paths: chunked, one GEMM per chunk -------------------------------------------------------


def _chunks(n: int, ho: int, wo: int, row_bytes: int) -> list[tuple[slice, slice]]:
    per_images, per_rows = _chunk_shape(ho, wo, row_bytes)
    return [(slice(n0, n0 + per_images), slice(r0, min(r0 + per_rows, ho)))
            for n0 in range(0, n, per_images) for r0 in range(0, ho, per_rows)]


def grad_input_fast(
    dy: np.ndarray, w: np.ndarray, input_shape: Shape, g: Geometry, *, absolute: bool = False
) -> np.ndarray:
    """Scatter of dy through w^T in the dtype of dy; `absolute` uses |dy| and |w| (the error bound).

    Per chunk of dy (images or output rows): one GEMM batched over groups gives every tap's contribution,
    (pixels, groups, og) x (groups, og, kh * kw * cg), then each tap adds its slice into a zero-padded
    copy of the result at the strided positions it read. Working memory beyond dy, w and the result is
    the GEMM's output, about _CHUNK_BYTES.
    """
    n, h, wd, c_in = input_shape
    kh, kw, cg, c_out = w.shape
    groups, og = g.groups, c_out // g.groups
    (sh, sw), (dh, dw) = g.strides, g.dilations
    rows, cols = g.rows, g.cols
    out = np.zeros((n, rows.before + h + rows.after, cols.before + wd + cols.after, c_in), dtype=dy.dtype)
    if dy.size and c_in:
        wa = np.abs(w) if absolute else w
        # per group (og, kh * kw * cg): columns in tap-major order, matching the scatter below
        wt = wa.astype(dy.dtype).reshape(kh, kw, cg, groups, og).transpose(3, 4, 0, 1, 2).reshape(groups, og, -1)
        for images, rs in _chunks(n, rows.out, cols.out, (kh * kw * c_in + c_out) * dy.itemsize):
            dyc = dy[images, rs]
            if absolute:
                dyc = np.abs(dyc)
            nb, nr, wo, _ = dyc.shape
            contrib = np.matmul(dyc.reshape(-1, groups, og).transpose(1, 0, 2), wt)  # (groups, m, kh*kw*cg)
            contrib = contrib.reshape(groups, nb, nr, wo, kh, kw, cg).transpose(1, 2, 3, 4, 5, 0, 6)
            top = rs.start * sh
            for i in range(kh):
                for j in range(kw):
                    r0, c0 = top + i * dh, j * dw
                    target = out[images, r0: r0 + (nr - 1) * sh + 1: sh, c0: c0 + (wo - 1) * sw + 1: sw]
                    target += contrib[:, :, :, i, j].reshape(nb, nr, wo, c_in)
    return np.ascontiguousarray(out[:, rows.before: rows.before + h, cols.before: cols.before + wd])


def grad_filter_fast(
    x: np.ndarray, dy: np.ndarray, filter_shape: Shape, g: Geometry, *, absolute: bool = False
) -> np.ndarray:
    """Correlation of x with dy per tap in the dtype of x; `absolute` uses |x| and |dy| (the error bound).

    Per chunk: the taps the chunk's output pixels read go into one im2col buffer (pixels, groups, kh*kw*cg),
    and one GEMM batched over groups adds buffer^T . dy into the (groups, kh*kw*cg, og) accumulator.
    """
    kh, kw, cg, c_out = filter_shape
    groups, og = g.groups, c_out // g.groups
    acc = np.zeros((groups, kh * kw * cg, og), dtype=x.dtype)
    n = x.shape[0]
    if dy.size and cg:
        for images, rs in _chunks(n, g.rows.out, g.cols.out, (kh * kw * x.shape[3] + c_out) * x.itemsize):
            xc = _padded_rows(x, g, kh, images, rs, absolute)
            dyc = dy[images, rs]
            if absolute:
                dyc = np.abs(dyc)
            nb, nr, wo, _ = dyc.shape
            col = np.empty((nb, nr, wo, kh, kw, groups, cg), dtype=x.dtype)
            for i in range(kh):
                for j in range(kw):
                    col[:, :, :, i, j] = _tap(xc, g, i, j, nr, wo).reshape(nb, nr, wo, groups, cg)
            col2 = col.reshape(-1, kh * kw, groups, cg).transpose(2, 0, 1, 3).reshape(groups, -1, kh * kw * cg)
            acc += np.matmul(col2.transpose(0, 2, 1), dyc.reshape(-1, groups, og).transpose(1, 0, 2))
    return np.ascontiguousarray(acc.reshape(groups, kh, kw, cg, og).transpose(1, 2, 3, 0, 4).reshape(filter_shape))


# --- the literal loops ----------------------------------------------------------------------------------


def conv2d_grad_input_direct(
    dy: np.ndarray, w: np.ndarray, input_shape: Any, strides: Any = 1, padding: Any = "SAME", dilations: Any = 1,
    groups: int = 1,
) -> np.ndarray:
    """The literal loop: each dy pixel adds dy[n, r, c, o] * w[..., o] onto the window it came from."""
    w = real_values("w", w)
    xs, ws, g = _check(input_shape, np.shape(w), dy, strides, padding, dilations, groups)
    dy, w = _f64("dy", dy), _array("w", w, ws)
    kh, kw, cg, c_out = ws
    og = c_out // groups
    (sh, sw), (dh, dw) = g.strides, g.dilations
    dxp = np.zeros((xs[0], g.rows.before + xs[1] + g.rows.after, g.cols.before + xs[2] + g.cols.after, xs[3]))
    for n in range(dy.shape[0]):
        for r in range(dy.shape[1]):
            for c in range(dy.shape[2]):
                for o in range(c_out):
                    first = (o // og) * cg
                    dxp[n, r * sh: r * sh + (kh - 1) * dh + 1: dh, c * sw: c * sw + (kw - 1) * dw + 1: dw,
                        first: first + cg] += dy[n, r, c, o] * w[:, :, :, o]
    return dxp[:, g.rows.before: g.rows.before + xs[1], g.cols.before: g.cols.before + xs[2]]


def conv2d_transpose_direct(
    y: np.ndarray, w: np.ndarray, output_shape: Any, strides: Any = 1, padding: Any = "SAME", dilations: Any = 1,
    groups: int = 1,
) -> np.ndarray:
    """The literal loop of the transposed convolution (the input gradient's loop)."""
    _check(output_shape, np.shape(w), y, strides, padding, dilations, groups, dy_name="y")
    return conv2d_grad_input_direct(y, w, output_shape, strides, padding, dilations, groups)


def conv2d_grad_filter_direct(
    x: np.ndarray, dy: np.ndarray, filter_shape: Any, strides: Any = 1, padding: Any = "SAME", dilations: Any = 1,
    groups: int = 1,
) -> np.ndarray:
    """The literal loop: w[..., o] gathers dy[n, r, c, o] times the window of x it met."""
    x = real_values("x", x)
    xs, ws, g = _check(np.shape(x), filter_shape, dy, strides, padding, dilations, groups)
    x, dy = _array("x", x, xs), _f64("dy", dy)
    kh, kw, cg, c_out = ws
    og = c_out // groups
    (sh, sw), (dh, dw) = g.strides, g.dilations
    xp = np.pad(x, ((0, 0), (g.rows.before, g.rows.after), (g.cols.before, g.cols.after), (0, 0)))
    dw_ = np.zeros(ws)
    for n in range(dy.shape[0]):
        for r in range(dy.shape[1]):
            for c in range(dy.shape[2]):
                for o in range(c_out):
                    first = (o // og) * cg
                    dw_[:, :, :, o] += dy[n, r, c, o] * xp[n, r * sh: r * sh + (kh - 1) * dh + 1: dh,
                                                           c * sw: c * sw + (kw - 1) * dw + 1: dw, first: first + cg]
    return dw_


__all__ = [
    "conv2d_grad_bias", "conv2d_grad_filter", "conv2d_grad_filter_direct", "conv2d_grad_input",
    "conv2d_grad_input_direct", "conv2d_transpose", "conv2d_transpose_direct",
]
