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

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from refconv.dtypes import LOW_PRECISION, eps, finfo
from refconv.spec import ConvSpec

# Chosen from measurements, see docs/tolerance.md (tools/measure_tolerance.py reproduces them).
# float32/float64: correct engines measured up to 2.3; precision-dropping modes (TF32-like inputs) land
# at 10^3-10^4. float16/bfloat16: tf and torch accumulate in float32 on the CPU, so a correct conv
# rounds at most twice to the output type (conv, then bias add): eps/2 |y| + eps/2 |y + b| <= eps * bound,
# hence C = 1, plus the float32 accumulation term K * eps(float32) / eps(dtype) added per case.
TOLERANCE_C: dict[str, float] = {"float64": 16.0, "float32": 16.0, "float16": 1.0, "bfloat16": 1.0}

OUTCOMES = ("pass", "mismatch", "wrong_shape", "wrong_dtype", "raised", "unsupported", "crashed", "timeout")


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
    actual_dtype: str = ""  # the dtype the adapter returned ('' when it returned nothing)

    def as_row(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in _FIELDS}  # asdict deep-copies: 0.2 ms a row
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
        if self.outcome == "wrong_dtype":
            return (f"{adapter}: values within tolerance (bound ratio {self.bound_ratio:.2g}) but {self.error} "
                    f"[{spec.id}]")
        return f"{adapter}: {self.outcome}: {self.error} [{spec.id}]"


_FIELDS = fields(Comparison)


def tiny(dtype: str) -> float:
    """The subnormal spacing: rounding near zero errs by at most half of it."""
    return float(finfo(dtype).smallest_subnormal)


def tolerance_c(spec: ConvSpec) -> float:
    """C for one case: TOLERANCE_C, plus float32 accumulation error for 16-bit dtypes."""
    if spec.op != "conv2d":  # the training ops' constants: refconv/op_tolerance.py
        from refconv.op_tolerance import tolerance_c as op_c

        return op_c(spec)
    c = TOLERANCE_C[spec.dtype]
    if spec.dtype in LOW_PRECISION:
        c += (spec.reduction_length + 1) * eps("float32") / eps(spec.dtype)
    return c


def ulp(values: np.ndarray, dtype: str) -> np.ndarray:
    """Spacing of the dtype's floating-point numbers at each value (float64 array)."""
    fi = finfo(dtype)
    mag = np.abs(values)
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(np.where(mag > 0, mag, 1.0)))
    exponent = np.maximum(exponent, fi.minexp)
    return np.ldexp(1.0, (exponent - fi.nmant).astype(np.int64))


def overflow_threshold(dtype: str) -> float:
    """The smallest magnitude that rounds to Inf in `dtype` (max + half an ulp of max, round to nearest)."""
    fi = finfo(dtype)
    big = float(fi.max)
    return big + float(np.ldexp(1.0, int(fi.maxexp) - 1 - int(fi.nmant) - 1)) if dtype != "float64" else np.inf


def dtype_name(a: np.ndarray) -> str:
    """The dtype's name as rows record it: 'float32', 'bfloat16' (ml_dtypes), 'int64', 'object'..."""
    return str(a.dtype.name)


def _all_finite(*arrays: np.ndarray) -> bool:
    """No NaN or Inf in any of them (either makes the sum non-finite; a sum that overflows says False too, which
    only costs the general path)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(sum(float(np.sum(a)) for a in arrays)))


def _element_errors(spec: ConvSpec, expected: np.ndarray, bound: np.ndarray, got: np.ndarray,
                    c: float) -> tuple[np.ndarray, np.ndarray]:
    """(abs error, bound ratio) per element; never NaN: a wrong NaN/Inf is an infinite error.

    Branches (docs/tolerance.md, "Non-finite values"):
    - the reference is NaN or +/-Inf: the output must be the same special value, else the error is inf;
    - the reference is finite but beyond the dtype's range after rounding: the same-signed Inf is right,
      as is a finite value within tolerance (rounding near the threshold may go either way);
    - the bound overflowed (|x| conv |w| = inf in float64): the true bound is at least the largest
      float64, so the error is judged against that, halved on both sides so no difference overflows
      (a stricter test than the model, never a looser one);
    - otherwise the model: |got - expected| / (eps * bound + tiny).
    """
    if _all_finite(expected, bound, got):  # nearly every case: no special branch applies (tested: same numbers)
        with np.errstate(over="ignore"):
            err = np.abs(got - expected)  # may overflow to inf: infinitely wrong, as below
        return err, err / (eps(spec.dtype) * bound + tiny(spec.dtype))
    return _special_element_errors(spec, expected, bound, got, c)


def _special_element_errors(spec: ConvSpec, expected: np.ndarray, bound: np.ndarray, got: np.ndarray,
                            c: float) -> tuple[np.ndarray, np.ndarray]:
    """`_element_errors` where some value is NaN or Inf (or a sum overflowed): every branch."""
    e, t, fmax = eps(spec.dtype), tiny(spec.dtype), float(np.finfo(np.float64).max)
    finite = np.isfinite(expected)
    bound_ok = finite & np.isfinite(bound)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(got - np.where(finite, expected, 0.0))
        ratio = err / (e * np.where(bound_ok, bound, 1.0) + t)
        # bound overflowed: halves are exact for these magnitudes and their difference cannot overflow
        half_err = np.abs(got * 0.5 - np.where(finite, expected, 0.0) * 0.5)
        big = finite & ~bound_ok
        ratio = np.where(big, half_err / (e * fmax * 0.5), ratio)
        err = np.where(big, half_err * 2.0, err)  # inf when the difference itself exceeds float64
        # the same special value as the reference is exact
        same_special = ~finite & ((got == expected) | (np.isnan(got) & np.isnan(expected)))
        err = np.where(same_special, 0.0, np.where(finite, err, np.inf))
        ratio = np.where(same_special, 0.0, np.where(finite, ratio, np.inf))
        # rounding past the dtype's largest value: an Inf of the reference's sign is IEEE's answer
        tol = c * (e * np.where(bound_ok, bound, fmax) + t)
        overflow = finite & np.isinf(got) & (np.sign(got) == np.sign(expected)) & (
            np.abs(expected) + tol >= overflow_threshold(spec.dtype))
        err = np.where(overflow, 0.0, err)
        ratio = np.where(overflow, 0.0, ratio)
    # anything left undefined (NaN output where the reference is finite, inf / inf) is infinitely wrong
    err[np.isnan(err)] = np.inf
    ratio[np.isnan(ratio)] = np.inf
    return err, ratio


def compare(
    spec: ConvSpec, expected: np.ndarray, bound: np.ndarray, actual: Any, c: float | None = None
) -> Comparison:
    """Shape, NaN/Inf positions, values and dtype of `actual` against the float64 reference.

    Outcome precedence: wrong_shape, then mismatch (values), then wrong_dtype (values within tolerance
    but the result is not in the case's dtype), then pass.
    """
    c = tolerance_c(spec) if c is None else c
    expected_shape = tuple(expected.shape)
    actual = np.asarray(actual)
    got_dtype = dtype_name(actual)
    if tuple(actual.shape) != expected_shape:
        return Comparison("wrong_shape", expected_shape, tuple(actual.shape), n_elements=expected.size,
                          tolerance_c=c, error=f"got shape {actual.shape}, expected {expected_shape}",
                          actual_dtype=got_dtype)
    wrong_dtype = "" if got_dtype == spec.dtype else f"returned {got_dtype}, expected {spec.dtype}"
    got = actual.astype(np.float64)
    n = expected.size
    if n == 0:
        return Comparison("wrong_dtype" if wrong_dtype else "pass", expected_shape, expected_shape, 0, 0, 0.0,
                          0.0, 0.0, 0.0, c, wrong_dtype, got_dtype)
    err, ratio = _element_errors(spec, np.asarray(expected, dtype=np.float64), np.asarray(bound, dtype=np.float64),
                                 got, c)
    beyond = int(np.count_nonzero(ratio > c))
    finite = np.isfinite(expected)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        rel = err / np.maximum(np.abs(np.where(finite, expected, 1.0)), tiny(spec.dtype))
        ulps = err / ulp(np.where(finite, expected, 0.0), spec.dtype)
    rel[np.isnan(rel)] = np.inf
    ulps[np.isnan(ulps)] = np.inf
    outcome = "mismatch" if beyond else ("wrong_dtype" if wrong_dtype else "pass")
    return Comparison(
        outcome, expected_shape, expected_shape, n, beyond,
        float(err.max()), float(rel.max()), float(ratio.max()), float(ulps.max()), c, wrong_dtype, got_dtype,
    )
