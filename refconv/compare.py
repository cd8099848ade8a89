"""Compare one adapter's output with the reference: pure functions, arrays in, a small record out.

Tolerance model (ARCHITECTURE.md, derivation in docs/tolerance.md). Every output element is a dot
product of length K = kh * kw * c_in / groups plus a bias. Any summation order in a precision with
unit roundoff u has error at most about K * u * sum(|x_i| * |w_i|), and the final rounding to the
output dtype adds eps/2 * |y|. So the scale of every element's error is
`bound = |x| conv |w| + |b|` (the reference applied to absolute values), and

    bound_ratio = max(|actual - expected| / (eps(dtype) * bound + tiny(dtype)))

is comparable across shapes, data and dtypes. An element is beyond tolerance when its ratio exceeds
`tolerance_c(spec)`; the constants were chosen from measurements, see docs/tolerance.md.
`tiny` is the dtype's subnormal spacing, which bounds the absolute error of rounding into the
subnormal range, so exact zeros never divide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from refconv.spec import ConvSpec

# Chosen from measurements, see docs/tolerance.md (tools/measure_tolerance.py reproduces them).
# float32/float64: correct engines measured up to 2.3; precision-dropping modes (TF32-like inputs) land
# at 10^3-10^4. float16/bfloat16: tf and torch accumulate in float32 on the CPU, so a correct conv
# rounds at most twice to the output type (conv, then bias add): eps/2 |y| + eps/2 |y + b| <= eps * bound,
# hence C = 1, plus the float32 accumulation term K * eps(float32) / eps(dtype) added per case.
TOLERANCE_C: dict[str, float] = {"float64": 16.0, "float32": 16.0, "float16": 1.0, "bfloat16": 1.0}
LOW_PRECISION = ("float16", "bfloat16")

OUTCOMES = ("pass", "mismatch", "wrong_shape", "raised", "unsupported", "crashed", "timeout")


@dataclass(frozen=True)
class Comparison:
    """The verdict on one (case, adapter) output; rows, assertions and HTML are built from it."""

    outcome: str
    expected_shape: tuple[int, ...]
    actual_shape: tuple[int, ...] | None
    n_elements: int = 0
    mismatched: int = 0
    max_abs_err: float = float("nan")
    max_rel_err: float = float("nan")
    bound_ratio: float = float("nan")
    max_ulp: float = float("nan")
    tolerance_c: float = float("nan")
    error: str = ""

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["expected_shape"] = "x".join(map(str, self.expected_shape))
        row["actual_shape"] = "" if self.actual_shape is None else "x".join(map(str, self.actual_shape))
        return row

    def message(self, adapter: str, spec: ConvSpec) -> str:
        """numpy-style: what was got and what was wanted."""
        if self.outcome == "pass":
            return f"{adapter}: pass, bound ratio {self.bound_ratio:.2g} [{spec.id}]"
        if self.outcome == "mismatch":
            share = 100.0 * self.mismatched / max(self.n_elements, 1)
            return (
                f"{adapter}: {self.mismatched} / {self.n_elements} elements beyond tolerance ({share:.1f}%), "
                f"max abs diff {self.max_abs_err:.2e}, max rel diff {self.max_rel_err:.2e}, "
                f"bound ratio {self.bound_ratio:.2e} > C={self.tolerance_c:g} [{spec.id}]"
            )
        if self.outcome == "wrong_shape":
            return f"{adapter}: output shape {self.actual_shape}, expected {self.expected_shape} [{spec.id}]"
        return f"{adapter}: {self.outcome}: {self.error} [{spec.id}]"


def eps(dtype: str) -> float:
    """Machine epsilon of a spec dtype."""
    return float(_finfo(dtype).eps)


def _finfo(dtype: str) -> Any:
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.finfo(ml_dtypes.bfloat16)
    return np.finfo(np.dtype(dtype))


def tiny(dtype: str) -> float:
    """The subnormal spacing: rounding near zero errs by at most half of it."""
    return float(_finfo(dtype).smallest_subnormal)


def tolerance_c(spec: ConvSpec) -> float:
    """C for one case: TOLERANCE_C, plus float32 accumulation error for 16-bit dtypes."""
    c = TOLERANCE_C[spec.dtype]
    if spec.dtype in LOW_PRECISION:
        c += (spec.reduction_length + 1) * eps("float32") / eps(spec.dtype)
    return c


def ulp(values: np.ndarray, dtype: str) -> np.ndarray:
    """Spacing of the dtype's floating-point numbers at each value (float64 array)."""
    fi = _finfo(dtype)
    mag = np.abs(values)
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(np.where(mag > 0, mag, 1.0)))
    exponent = np.maximum(exponent, fi.minexp)
    return np.ldexp(1.0, (exponent - fi.nmant).astype(np.int64))


def compare(
    spec: ConvSpec, expected: np.ndarray, bound: np.ndarray, actual: Any, c: float | None = None
) -> Comparison:
    """Shape, NaN/Inf positions and values of `actual` against the float64 reference."""
    c = tolerance_c(spec) if c is None else c
    expected_shape = tuple(expected.shape)
    actual = np.asarray(actual)
    if tuple(actual.shape) != expected_shape:
        return Comparison("wrong_shape", expected_shape, tuple(actual.shape), n_elements=expected.size,
                          tolerance_c=c, error=f"got shape {actual.shape}, expected {expected_shape}")
    got = actual.astype(np.float64)
    n = expected.size
    if n == 0:
        return Comparison("pass", expected_shape, expected_shape, 0, 0, 0.0, 0.0, 0.0, 0.0, c)
    finite = np.isfinite(expected)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got - np.where(finite, expected, 0.0))
    special_ok = ~finite & ((got == expected) | (np.isnan(got) & np.isnan(expected)))
    err = np.where(finite, diff, np.where(special_ok, 0.0, np.inf))
    err[np.isnan(err)] = np.inf  # a NaN where the reference is finite is infinitely wrong
    scale = eps(spec.dtype) * np.where(finite, bound, 1.0) + tiny(spec.dtype)
    ratio = err / scale
    beyond = int(np.count_nonzero(ratio > c))
    rel = err / np.maximum(np.abs(np.where(finite, expected, 1.0)), tiny(spec.dtype))
    ulps = err / ulp(np.where(finite, expected, 0.0), spec.dtype)
    return Comparison(
        "mismatch" if beyond else "pass", expected_shape, expected_shape, n, beyond,
        float(err.max()), float(rel.max()), float(ratio.max()), float(ulps.max()), c,
    )

