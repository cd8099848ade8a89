"""The float64 reference conv2d: a literal direct loop (the oracle's oracle) and the fast path.

Conventions (SEMANTICS.md): x is NHWC, w is HWIO, b has shape (c_out,). The kernel is applied
without flipping (cross-correlation). With groups g, w follows TensorFlow's grouped HWIO layout
(kh, kw, c_in / g, c_out): output channel o belongs to group o // (c_out / g) and sees input
channels [g * c_in/g, (g + 1) * c_in/g). Padding follows `refconv.padding`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from refconv.blas_threads import run_chunks, workspace
from refconv.padding import Axis, _geometry
from refconv.spec import SpecError, _pair, normalize_padding


class Geometry(NamedTuple):
    rows: Axis
    cols: Axis
    strides: tuple[int, int]
    dilations: tuple[int, int]
    groups: int


def real_values(name: str, a: Any) -> np.ndarray:
    """`a` as an array of real numbers (any float, int or bool dtype, ml_dtypes floats), or SpecError naming it.

    Complex, text, dates and objects that are not numbers are refused, not cast (a cast would drop an
    imaginary part silently); the array is not copied.
    """
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise SpecError(f"{name} must be an array of real numbers: {exc}") from None
    kind = arr.dtype.kind
    if kind in "fiub" or (kind == "V" and arr.dtype.names is None and arr.dtype.itemsize <= 2):  # ml_dtypes floats
        return arr
    if kind == "O":
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{name} must hold real numbers, got objects: {exc}") from None
    raise SpecError(f"{name} must hold real numbers, got dtype {arr.dtype}")


def _check(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: Any, padding: Any, dilations: Any, groups: Any,
    activation: Any,
) -> Geometry:
    """Validate arguments up front, naming the problem, and return the geometry."""
    x, w = real_values("x", x), real_values("w", w)
    if b is not None:
        real_values("b", b)
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
    (_, h, wd, _), (kh, kw, _, _) = x.shape, w.shape
    rows, cols = _geometry(normalize_padding(padding), h, wd, kh, kw, strides, dilations)
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
    return conv2d_fast(*_float64(x, w, b), g, activation)


def _float64(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The arrays in float64, without a copy when they already are."""
    return np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64), (
        None if b is None else np.asarray(b, dtype=np.float64))


def conv2d_fast(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry, activation: str | None = None,
    *, absolute: bool = False,
) -> np.ndarray:
    """Conv in the dtype of x (float64 for the reference), chunk by chunk; `absolute` convolves |x|, |w|, |b|.

    Each chunk (a few images or a few output rows of one image) goes through im2col (taps copied from
    x, zeros where they fall in the padding) + one GEMM batched over groups, or, with one input channel
    per group, through an einsum over a sliding-window view of the chunk, zero-padded on its own. The
    chunks are shared among as many threads as BLAS has, each GEMM on one BLAS thread
    (refconv.blas_threads: one multi-threaded BLAS call per chunk made the speed depend on the load and
    the process, docs/performance.md). Working memory beyond x, w and the output stays near
    _CHUNK_BYTES per thread whatever the shape; x is never padded or copied as a whole.
    """
    n, (_, _, cg, c_out) = x.shape[0], w.shape
    out = np.empty((n, g.rows.out, g.cols.out, c_out), dtype=x.dtype)  # every chunk writes its part
    w = (np.abs(w) if absolute else w).astype(x.dtype, copy=False)
    if b is not None:
        b = np.asarray(np.abs(b) if absolute else b, dtype=x.dtype)
    if out.size == 0 or cg == 0:
        out[...] = 0  # no input channels: nothing to sum
        return _finish(out, b, activation)
    make_step, per_images, per_rows = _plan(x, w, b, g, absolute)
    chunks = [(slice(n0, n0 + per_images), slice(r0, r0 + per_rows))
              for n0 in range(0, n, per_images) for r0 in range(0, g.rows.out, per_rows)]

    def make_worker() -> Callable[[tuple[slice, slice]], None]:
        step = make_step()  # per thread: its own im2col buffer, reused by each chunk it takes

        def work(chunk: tuple[slice, slice]) -> None:
            images, rows = chunk
            oc = out[images, rows]  # C-contiguous: whole images, or rows of one image
            step(images, rows, oc)
            _finish(oc, None, activation)  # while the chunk is still in cache

        return work

    run_chunks(chunks, make_worker)
    return out


class _Plan(NamedTuple):
    make_step: Callable[[], _Step]
    images: int  # per chunk
    rows: int  # output rows per chunk


def _plan(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry, absolute: bool = False) -> _Plan:
    """The chunk step that measured fastest for this shape, and the chunk size."""
    kh, kw, cg, c_out = w.shape
    # depthwise with multiplier 1: GEMMs of K = kh * kw, N = 1 waste BLAS; the einsum is 2.4x faster (measured,
    # docs/performance.md), while with a multiplier or a single input channel im2col stays 2-6x ahead
    windows = cg == 1 and c_out == g.groups
    # bytes per output pixel of a chunk's working set: the im2col row (or the input pixel) and the output
    row_bytes = ((1 if windows else kh * kw) * x.shape[3] + c_out) * x.dtype.itemsize
    per_images, per_rows = _chunk_shape(g.rows.out, g.cols.out, row_bytes)
    if windows:
        return _Plan(lambda: _Windows(x, w, b, g, absolute), per_images, per_rows)
    return _Plan(lambda: _Im2col(x, w, b, g, per_images * per_rows * g.cols.out, absolute), per_images, per_rows)


# Target bytes of one chunk's working set (the im2col buffer). Measured (docs/performance.md): near
# 2 MiB it stays in cache and building it costs a few percent of the GEMM; at 8 MiB and above it costs more.
_CHUNK_BYTES = 2 << 20
# Fewer GEMM rows than this and BLAS loses efficiency, so large-K cases get a larger buffer.
_MIN_CHUNK_PIXELS = 256
# A thread keeps its im2col workspace between calls up to this size (larger ones are freed after the call).
_KEEP_BYTES = 16 << 20


def _chunk_shape(ho: int, wo: int, row_bytes: int) -> tuple[int, int]:
    """(images, output rows) per chunk, so that a chunk's buffer holds about _CHUNK_BYTES."""
    pixels = max(_MIN_CHUNK_PIXELS, _CHUNK_BYTES // row_bytes)
    if pixels >= ho * wo:
        return pixels // (ho * wo), ho
    return 1, max(1, pixels // wo)


_Step = Callable[[slice, slice, np.ndarray], None]  # (images, output rows, output chunk to fill)


def _padded_rows(x: np.ndarray, g: Geometry, kh: int, images: slice, rows: slice, absolute: bool) -> np.ndarray:
    """The zero-padded input rows that output `rows` read; a view of x when no padding touches them."""
    (sh, _), (dh, _) = g.strides, g.dilations
    n_rows = min(rows.stop, g.rows.out) - rows.start
    top = rows.start * sh - g.rows.before  # first input row read, in unpadded coordinates
    span = (n_rows - 1) * sh + (kh - 1) * dh + 1
    lo, hi = max(top, 0), min(top + span, x.shape[1])
    left, right = g.cols.before, g.cols.after
    if (lo, hi, left, right) == (top, top + span, 0, 0):
        return np.abs(x[images, lo:hi]) if absolute else x[images, lo:hi]
    xs = x[images]
    buf = np.zeros((xs.shape[0], span, left + x.shape[2] + right, x.shape[3]), dtype=x.dtype)
    if hi > lo:
        inner = buf[:, lo - top: hi - top, left: left + x.shape[2]]
        inner[...] = xs[:, lo:hi]
        if absolute:
            np.abs(inner, out=inner)
    return buf


def _tap(xc: np.ndarray, g: Geometry, i: int, j: int, ho: int, wo: int) -> np.ndarray:
    """The (images, ho, wo, channels) view of a padded chunk that kernel tap (i, j) meets."""
    (sh, sw), (dh, dw) = g.strides, g.dilations
    return xc[:, i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw]


def _inside(first: int, count: int, stride: int, offset: int, size: int) -> tuple[int, int]:
    """[lo, hi) of outputs first .. first + count - 1, counted from first, whose input o * stride + offset is in x."""
    lo = max(0, -(offset // stride) - first)
    hi = min(count, (size - 1 - offset) // stride - first + 1)
    return (lo, hi) if lo < hi else (0, 0)


class _Im2col:
    """Chunk step: copy the taps into one reused buffer, then one GEMM batched over groups, bias included."""

    def __init__(
        self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry, max_pixels: int, absolute: bool,
    ) -> None:
        kh, kw, cg, _ = w.shape
        self.x, self.w, self.b, self.g, self.absolute = x, w, b, g, absolute
        self.one_by_one = (kh, kw, *g.strides, *g.rows[1:], *g.cols[1:]) == (1, 1, 1, 1, 0, 0, 0, 0)
        # per group (kh * kw * cg, c_out / groups), rows in the order of the buffer's columns
        wg = w.reshape(kh, kw, cg, g.groups, -1).transpose(3, 0, 1, 2, 4).reshape(g.groups, kh * kw * cg, -1)
        # the bias rides in the GEMM as a last weight row against a column of ones: no extra pass over the output
        self.wg = wg if b is None else np.concatenate([wg, b.reshape(g.groups, 1, -1)], axis=1)
        self.k = self.wg.shape[1]
        rows = max_pixels * g.groups
        # the thread's kept workspace: no fresh pages to fault per call (docs/performance.md)
        space = workspace(rows * self.k * w.dtype.itemsize, _KEEP_BYTES)
        self.buf = space.view(w.dtype).reshape(rows, self.k)
        self.buf[:, kh * kw * cg:] = 1  # the ones column: each chunk's view puts it at the same place

    def __call__(self, images: slice, rows: slice, oc: np.ndarray) -> None:
        nb, ho, wo, _ = oc.shape
        kh, kw, cg, _ = self.w.shape
        m, groups = nb * ho * wo, self.g.groups
        out = oc.reshape(m, groups, -1).transpose(1, 0, 2)
        xc = self.x[images, rows]
        if self.one_by_one and xc.flags.c_contiguous:
            # a 1x1 kernel at unit stride without padding: the pixels are already the GEMM rows
            xc = np.abs(xc) if self.absolute else xc
            np.matmul(xc.reshape(m, groups, cg).transpose(1, 0, 2), self.wg[:, :cg], out=out)
            _finish(oc, self.b, None)
            return
        col = self.buf[: m * groups].reshape(nb, ho, wo, groups, self.k)
        for i in range(kh):
            for j in range(kw):
                start = (i * kw + j) * cg
                self._copy_tap(col[..., start: start + cg], images, rows.start, i, j)
        # (groups, m, k) with BLAS-compatible strides: no copy
        np.matmul(col.reshape(m, groups, self.k).transpose(1, 0, 2), self.wg, out=out)

    def _copy_tap(self, dst: np.ndarray, images: slice, r0: int, i: int, j: int) -> None:
        """Fill dst (images, rows, cols, groups, cg) with what tap (i, j) reads: x where inside, 0 in the padding.

        Read straight from x: a zero-padded copy of the chunk's input first cost 13% of the stride-2 case.
        """
        (sh, sw), (dh, dw), x = self.g.strides, self.g.dilations, self.x
        nb, ho, wo, groups, cg = dst.shape
        top, left = i * dh - self.g.rows.before, j * dw - self.g.cols.before  # input row / column of output 0
        ra, rb = _inside(r0, ho, sh, top, x.shape[1])
        ca, cb = _inside(0, wo, sw, left, x.shape[2])
        if ra == rb or ca == cb:
            dst[...] = 0
            return
        # zeros only where this tap meets padding: each numpy call holds the GIL the chunk threads share
        if ra > 0:
            dst[:, :ra] = 0
        if rb < ho:
            dst[:, rb:] = 0
        if ca > 0:
            dst[:, ra:rb, :ca] = 0
        if cb < wo:
            dst[:, ra:rb, cb:] = 0
        y, c = (r0 + ra) * sh + top, ca * sw + left
        src = x[images, y: y + (rb - ra - 1) * sh + 1: sh, c: c + (cb - ca - 1) * sw + 1: sw]
        inner = dst[:, ra:rb, ca:cb]
        src = src.reshape(inner.shape)
        if self.absolute:
            np.abs(src, out=inner)
        else:
            inner[...] = src


class _Windows:
    """Chunk step for one input channel per group: einsum over a sliding-window view (no copy of the windows)."""

    def __init__(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry, absolute: bool) -> None:
        kh, kw, cg, _ = w.shape
        self.x, self.w, self.b, self.g, self.absolute = x, w.reshape(kh, kw, cg, g.groups, -1), b, g, absolute

    def __call__(self, images: slice, rows: slice, oc: np.ndarray) -> None:
        nb, ho, wo, _ = oc.shape
        kh, kw, cg, groups, _ = self.w.shape
        xc = _padded_rows(self.x, self.g, kh, images, rows, self.absolute)
        (sh, sw), (dh, dw) = self.g.strides, self.g.dilations
        span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
        v = sliding_window_view(xc, span, axis=(1, 2))[:, : (ho - 1) * sh + 1: sh, : (wo - 1) * sw + 1: sw]
        v = v[..., ::dh, ::dw].reshape(nb, ho, wo, groups, cg, kh, kw)
        np.einsum("nrcgkij,ijkgm->nrcgm", v, self.w, out=oc.reshape(nb, ho, wo, groups, -1))
        _finish(oc, self.b, None)


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
    """|x| conv |w| + |b|: the magnitude every output's rounding error scales with (fast path, |x| per chunk)."""
    g = _check(x, w, b, strides, padding, dilations, groups, None)
    return conv2d_fast(*_float64(x, w, b), g, absolute=True)


def for_spec(spec: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(expected, bound) of a ConvSpec's inputs: two fast-path convolutions in float64, one float64 cast."""
    g = _check(x, w, b, spec.strides, spec.padding, spec.dilations, spec.groups, spec.activation)
    x64, w64, b64 = _float64(x, w, b)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and Inf inputs are cases (refconv.special), not accidents
        return conv2d_fast(x64, w64, b64, g, spec.activation), conv2d_fast(x64, w64, b64, g, absolute=True)
