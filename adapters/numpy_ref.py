"""`numpy`: the reference's fast path computed in the case's dtype (float32 accumulation for 16-bit types).

It shares the reference's algorithm, so it checks the harness, the dtype handling and the
tolerance model end to end rather than an independent implementation.

Kernels (`isa(spec)`): "openblas:<core>", the kernel set OpenBLAS itself chose at load
(openblas_get_corename: 'SkylakeX', 'Haswell' ...), through threadpoolctl where installed, else through
OpenBLAS's C API (refconv.blas_threads); "openblas" when it names none, "blas" for another BLAS.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter
from refconv import blas_threads
from refconv.inputs import np_dtype
from refconv.reference import _check, conv2d_fast
from refconv.spec import ConvSpec


def blas_core() -> str | None:
    """OpenBLAS's own name of the kernels it chose ('' when it names none); None for another BLAS."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        found = blas_threads._blas()  # the OpenBLAS NumPy uses, found in the process's mapped libraries
        return None if found is None else found.corename.replace("unknown", "")
    libraries = [lib for lib in threadpool_info() if lib.get("internal_api") == "openblas"]
    libraries.sort(key=lambda lib: "numpy" not in str(lib.get("filepath", "")))  # NumPy's own first
    return str(libraries[0].get("architecture") or "") if libraries else None


class NumpyAdapter(PreparedAdapter):
    name = "numpy"

    @functools.cached_property
    def kernels(self) -> str:
        """'openblas:<core>' as OpenBLAS names the kernels it chose (asked once; subclasses need no __init__)."""
        core = blas_core()
        return "blas" if core is None else f"openblas:{core}" if core else "openblas"

    def isa(self, spec: ConvSpec | None) -> str:
        """The BLAS kernels every case's GEMMs run (module docstring)."""
        return self.kernels

    def version(self) -> str:
        return np.__version__

    def supports(self, spec: ConvSpec) -> str | None:
        if spec.layout == "channels_last":
            return "channels_last is a PyTorch memory format; NumPy has NHWC and NCHW arrays only"
        return None  # NCHW is a framework calling convention; this path computes on NHWC arrays either way

    def settings(self) -> dict[str, Any]:
        return {"accumulation": "case dtype; float32 for float16/bfloat16", "blas": self.kernels}

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        out_dtype = np_dtype(spec.dtype)
        work = np.float32 if spec.dtype in ("float16", "bfloat16") else out_dtype
        g = _check(x, w, b, spec.strides, spec.padding, spec.dilations, spec.groups, spec.activation)
        xw, ww = x.astype(work), w.astype(work)
        bw = None if b is None else b.astype(work)

        def call() -> np.ndarray:
            return conv2d_fast(xw, ww, bw, g, spec.activation).astype(out_dtype)

        return Prepared(call, lambda out: out)
