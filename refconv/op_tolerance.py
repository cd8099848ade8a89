"""Tolerance of the training ops: the forward bound model applied to each op's own sums (docs/tolerance.md).

Every element of grad_input / transpose is a sum over the c_out / groups channels of the kernel taps that
met that input pixel (at most kh * kw * c_out / groups terms) of |dy| * |w|; every element of grad_filter
is a sum over n * ho * wo output pixels of |x| * |dy|. The bound is the op on absolute values
(refconv.ops.reference) and C multiplies eps(dtype) as for conv2d; 16-bit dtypes add the float32
accumulation term (K + 1) * eps(float32) / eps(dtype) with the op's own K. The constants come from
`python tools/measure_tolerance.py --ops` (docs/tolerance.md, "Training ops").
"""

from __future__ import annotations

from refconv.dtypes import LOW_PRECISION, eps
from refconv.padding import geometry
from refconv.spec import ConvSpec

# Measured (docs/tolerance.md, "Training ops"): correct engines stay below 2.6 in float32/float64 for every op,
# as for conv2d (C = 16). 16-bit: torch and jax stay below 0.5, tf's CPU backprop kernels reach 1.44 (they
# round more than once); C = 2 covers them and still flags most reduced-input results (medians 1.7-5.6).
OP_TOLERANCE_C: dict[str, dict[str, float]] = {
    op: {"float64": 16.0, "float32": 16.0, "float16": 2.0, "bfloat16": 2.0}
    for op in ("grad_input", "grad_filter", "transpose")
}


def reduction_length(spec: ConvSpec) -> int:
    """The length of each output element's sum for the spec's op."""
    if spec.op == "grad_filter":
        rows, cols = geometry(spec)
        return spec.n * rows.out * cols.out
    if spec.op in ("grad_input", "transpose"):
        return spec.kh * spec.kw * spec.c_out // spec.groups
    return spec.reduction_length


def tolerance_c(spec: ConvSpec) -> float:
    """C for one case of a training op: OP_TOLERANCE_C, plus float32 accumulation error for 16-bit dtypes."""
    c = OP_TOLERANCE_C[spec.op][spec.dtype]
    if spec.dtype in LOW_PRECISION:
        c += (reduction_length(spec) + 1) * eps("float32") / eps(spec.dtype)
    return c
