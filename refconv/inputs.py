"""Seeded inputs of a case, drawn in the case's dtype so the reference sees what the framework sees."""

from __future__ import annotations

from typing import Any

import numpy as np

from refconv.spec import ConvSpec


def np_dtype(name: str) -> Any:
    """The NumPy dtype for a spec dtype name; bfloat16 comes from ml_dtypes."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def make_inputs(spec: ConvSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(x NHWC, w HWIO, b or None) in the case's dtype, bit-identical for the same spec.

    >>> x, w, b = make_inputs(ConvSpec(n=1, h=4, w=4, c_in=2, c_out=3, kh=3, kw=3))
    >>> x.shape, w.shape, b.shape, x.dtype.name
    ((1, 4, 4, 2), (3, 3, 2, 3), (3,), 'float32')
    """
    rng = np.random.default_rng([spec.seed, spec.n, spec.h, spec.w, spec.c_in, spec.c_out, spec.kh, spec.kw])
    dtype = np_dtype(spec.dtype)
    x = rng.standard_normal(spec.input_shape).astype(dtype)
    w = rng.standard_normal(spec.kernel_shape).astype(dtype)
    b = rng.standard_normal(spec.c_out).astype(dtype) if spec.bias else None
    if getattr(spec, "values", "normal") != "normal":  # NaN, Inf, ... planted after the draws (refconv.special)
        from refconv.special import apply

        return apply(spec, x, w, b)
    return x, w, b
