"""`scipy`: an independent oracle built from scipy.signal.correlate2d, for small cases.

For each (image, output channel, input channel of its group) the zero-padded input plane is
cross-correlated ('valid' mode, no kernel flip) with the kernel plane, and the windows the stride
picks are kept. A dilated kernel is not dilated by inserting zeros (0 * Inf = NaN would add terms a
dilated convolution does not have): output row r reads padded rows r * s + i * d, all of one phase
p = r * s mod d, so each phase's sub-image x[p::d] is correlated with the undilated kernel (the same
for columns). The per-channel planes are summed, the bias added and ReLU applied, all in float64, and
the result is rounded once to the case dtype. No GEMM, einsum or im2col is involved, so it shares no
code path with the reference. Cases above MAX_FLOPS or MAX_PLANES are declined with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter
from refconv.inputs import np_dtype
from refconv.padding import effective_kernel, explicit_pads
from refconv.spec import ConvSpec

MAX_FLOPS = 200_000_000  # correlate2d work in 'full' mode (more than the phases do), about a second on one core
MAX_PLANES = 50_000  # Python-level correlate2d calls: channel planes times dilation phases


def phases(out: int, stride: int, dilation: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(phase p, the outputs r of that phase, their window starts in rows x[p::dilation]), per phase read.

    Output r's taps read padded rows r * stride + i * dilation (i < k): all rows of phase
    p = r * stride mod dilation, rows (r * stride - p) // dilation + i of the phase's sub-image.

    >>> [(p, r.tolist(), q.tolist()) for p, r, q in phases(4, 1, 2)]
    [(0, [0, 2], [0, 1]), (1, [1, 3], [0, 1])]
    """
    starts = np.arange(out) * stride
    return [(p, np.flatnonzero(starts % dilation == p), (starts[starts % dilation == p] - p) // dilation)
            for p in sorted({int(v) for v in starts % dilation})]


def _out(padded: int, k_eff: int, stride: int) -> int:
    """Windows of span k_eff that start every `stride` pixels and end inside `padded` pixels."""
    return len(range(0, padded - k_eff + 1, stride))


def _work(spec: ConvSpec) -> tuple[int, int]:
    """(FLOPs of 'full' correlations with the dilated kernel, an upper bound; number of correlate2d calls)."""
    (t, b), (left, r) = explicit_pads(spec)
    (sh, sw), (dh, dw) = spec.strides, spec.dilations
    kh, kw = effective_kernel(spec.kh, dh), effective_kernel(spec.kw, dw)
    planes = spec.n * spec.c_out * (spec.c_in // spec.groups)
    hp, wp = spec.h + t + b, spec.w + left + r
    full = (hp + kh - 1) * (wp + kw - 1)
    calls = planes * len(phases(_out(hp, kh, sh), sh, dh)) * len(phases(_out(wp, kw, sw), sw, dw))
    return 2 * planes * full * kh * kw, calls


class ScipyAdapter(PreparedAdapter):
    name = "scipy"

    def __init__(self) -> None:
        import scipy
        from scipy.signal import correlate2d

        self.scipy = scipy
        self.correlate2d = correlate2d

    def version(self) -> str:
        return str(self.scipy.__version__)

    def settings(self) -> dict[str, Any]:
        return {"accumulation": "float64, rounded once to the case dtype"}

    def isa(self, spec: ConvSpec | None) -> str:
        """correlate2d's plain C loops, no dispatched kernels: 'scipy'."""
        return "scipy"

    def supports(self, spec: ConvSpec) -> str | None:
        if spec.layout == "channels_last":
            return "channels_last is a PyTorch memory format; this oracle works on channel planes"
        work, calls = _work(spec)
        if work > MAX_FLOPS:
            return f"{work:.2e} correlate2d FLOPs is above the scipy oracle's cap of {MAX_FLOPS:.0e}"
        if calls > MAX_PLANES:
            return (f"{calls} correlate2d calls (channel planes times dilation phases) is above the scipy oracle's "
                    f"cap of {MAX_PLANES}")
        return None

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        b64 = None if b is None else b.astype(np.float64)
        return Prepared(lambda: self._conv(x64, w64, b64, spec), lambda y: y.astype(np_dtype(spec.dtype)))

    def _conv(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
        (t, bottom), (left, r) = explicit_pads(spec)
        xp = np.pad(x, ((0, 0), (t, bottom), (left, r), (0, 0)))
        (sh, sw), (dh, dw) = spec.strides, spec.dilations
        ho = _out(xp.shape[1], effective_kernel(spec.kh, dh), sh)
        wo = _out(xp.shape[2], effective_kernel(spec.kw, dw), sw)
        cg, og = spec.c_in // spec.groups, spec.c_out // spec.groups
        out = np.zeros((spec.n, ho, wo, spec.c_out))
        for pr, out_rows, sub_rows in phases(ho, sh, dh):
            for pc, out_cols, sub_cols in phases(wo, sw, dw):
                # one phase's sub-image holds every pixel its outputs' windows read, the kernel's taps adjacent
                sub = xp[:, pr::dh, pc::dw, :]
                picked = np.ix_(sub_rows, sub_cols)
                for o in range(spec.c_out):
                    first = (o // og) * cg
                    for i in range(cg):
                        for n in range(spec.n):
                            corr = self.correlate2d(sub[n, :, :, first + i], w[:, :, i, o], mode="valid")
                            out[n, out_rows[:, None], out_cols[None, :], o] += corr[picked]
        if b is not None:
            out += b
        if spec.activation == "relu":
            np.maximum(out, 0, out=out)
        return out
