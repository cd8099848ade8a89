"""`scipy`: an independent oracle built from scipy.signal.correlate2d, for small cases.

For each (image, output channel, input channel of its group) the zero-padded input plane is
cross-correlated ('full' mode, no kernel flip) with the kernel plane, dilated by inserting zeros
between taps; the windows that lie wholly inside the padded input are then picked with the stride.
The per-channel planes are summed, the bias added and ReLU applied, all in float64, and the result
is rounded once to the case dtype. No GEMM, einsum or im2col is involved, so it shares no code path
with the reference. Cases above MAX_FLOPS or MAX_PLANES are declined with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter
from refconv.inputs import np_dtype
from refconv.padding import effective_kernel, explicit_pads
from refconv.spec import ConvSpec

MAX_FLOPS = 200_000_000  # correlate2d work in 'full' mode, about a second on one core
MAX_PLANES = 50_000  # Python-level correlate2d calls


def dilate(kernel: np.ndarray, dh: int, dw: int) -> np.ndarray:
    """A 2-D kernel with dh - 1 (dw - 1) zero rows (columns) between its taps.

    >>> dilate(np.array([[1.0, 2.0]]), 1, 3)
    array([[1., 0., 0., 2.]])
    """
    kh, kw = kernel.shape
    out = np.zeros((effective_kernel(kh, dh), effective_kernel(kw, dw)), dtype=kernel.dtype)
    out[::dh, ::dw] = kernel
    return out


def _work(spec: ConvSpec) -> tuple[int, int]:
    """(FLOPs of the 'full' correlations, number of correlate2d calls)."""
    (t, b), (left, r) = explicit_pads(spec)
    kh, kw = effective_kernel(spec.kh, spec.dilations[0]), effective_kernel(spec.kw, spec.dilations[1])
    planes = spec.n * spec.c_out * (spec.c_in // spec.groups)
    full = (spec.h + t + b + kh - 1) * (spec.w + left + r + kw - 1)
    return 2 * planes * full * kh * kw, planes


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

    def supports(self, spec: ConvSpec) -> str | None:
        if spec.layout == "channels_last":
            return "channels_last is a PyTorch memory format; this oracle works on channel planes"
        work, planes = _work(spec)
        if work > MAX_FLOPS:
            return f"{work:.2e} correlate2d FLOPs is above the scipy oracle's cap of {MAX_FLOPS:.0e}"
        if planes > MAX_PLANES:
            return f"{planes} channel planes is above the scipy oracle's cap of {MAX_PLANES}"
        return None

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        b64 = None if b is None else b.astype(np.float64)
        return Prepared(lambda: self._conv(x64, w64, b64, spec), lambda y: y.astype(np_dtype(spec.dtype)))

    def _conv(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
        (t, bottom), (left, r) = explicit_pads(spec)
        xp = np.pad(x, ((0, 0), (t, bottom), (left, r), (0, 0)))
        (sh, sw), (dh, dw) = spec.strides, spec.dilations
        kh, kw = effective_kernel(spec.kh, dh), effective_kernel(spec.kw, dw)
        hp, wp = xp.shape[1], xp.shape[2]
        # 'full' index kh - 1 + i is the window whose top row is padded row i; windows must end inside.
        rows, cols = slice(kh - 1, hp, sh), slice(kw - 1, wp, sw)
        ho, wo = len(range(hp)[rows]), len(range(wp)[cols])
        cg, og = spec.c_in // spec.groups, spec.c_out // spec.groups
        out = np.zeros((spec.n, ho, wo, spec.c_out))
        for o in range(spec.c_out):
            first = (o // og) * cg
            for i in range(cg):
                kernel = dilate(w[:, :, i, o], dh, dw)
                for n in range(spec.n):
                    out[n, :, :, o] += self.correlate2d(xp[n, :, :, first + i], kernel, mode="full")[rows, cols]
        if b is not None:
            out += b
        if spec.activation == "relu":
            np.maximum(out, 0, out=out)
        return out
