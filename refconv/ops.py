"""What a case checks: one seam between a ConvSpec and the reference, the inputs and an adapter's call.

A ConvSpec describes a forward convolution; the op it checks decides which seeded inputs it has, which
float64 reference and error bound it is held against, and which adapter method is called. The worker,
the runner and the conformance check go through these functions, so a new op is added in one place.

| op | inputs | reference (refconv.reference / refconv.grad) | adapter method (optional but conv2d) |
|---|---|---|---|
| conv2d | x, w, b | conv2d(x, w) + b | conv2d(x, w, b, spec) -> NHWC |
| grad_input | dy, w | conv2d_grad_input(dy, w, spec.input_shape) | grad_input(dy, w, spec) -> NHWC |
| grad_filter | x, dy | conv2d_grad_filter(x, dy, spec.kernel_shape) | grad_filter(x, dy, spec) -> HWIO |
| transpose | y, w | conv2d_transpose(y, w, spec.input_shape) | transpose(y, w, spec) -> NHWC |

dy and y have the forward output's shape and are drawn from their own seeded stream; x and w are the
forward case's own. The bound of each op is the same op on absolute values (docs/tolerance.md).

>>> from refconv.spec import ConvSpec
>>> spec = ConvSpec(n=1, h=4, w=4, c_in=2, c_out=3, kh=3, kw=3)
>>> expected, bound = reference(spec, inputs(spec))
>>> expected.shape, bound.shape
((1, 4, 4, 3), (1, 4, 4, 3))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from refconv import grad
from refconv.inputs import make_inputs, np_dtype
from refconv.padding import output_shape
from refconv.reference import for_spec
from refconv.spec import OPS, ConvSpec

Inputs = tuple[Any, ...]


def op_of(spec: ConvSpec) -> str:
    """The op a spec checks: 'conv2d', 'grad_input', 'grad_filter' or 'transpose'."""
    return str(getattr(spec, "op", "conv2d"))


def gradient(spec: ConvSpec) -> np.ndarray:
    """The seeded dy (or the transposed conv's y) of a case: forward-output shaped, in the case's dtype."""
    rng = np.random.default_rng([spec.seed, spec.n, spec.h, spec.w, spec.c_in, spec.c_out, spec.kh, spec.kw, 1])
    return rng.standard_normal(output_shape(spec)).astype(np_dtype(spec.dtype))


def inputs(spec: ConvSpec) -> Inputs:
    """The case's seeded inputs, bit-identical in every process: (x, w, b), (dy, w), (x, dy) or (y, w)."""
    op = op_of(spec)
    if op == "conv2d":
        return make_inputs(spec)
    x, w, _ = make_inputs(spec)  # the forward case's own x and w (no bias is drawn for these ops)
    return (x, gradient(spec)) if op == "grad_filter" else (gradient(spec), w)


def reference(spec: ConvSpec, values: Inputs) -> tuple[np.ndarray, np.ndarray]:
    """(expected, bound) in float64 for the case's op; the bound is the op on absolute values."""
    op = op_of(spec)
    if op == "conv2d":
        return for_spec(spec, *values)
    a, b = (np.asarray(v, dtype=np.float64) for v in values)
    args = (spec.strides, spec.padding, spec.dilations, spec.groups)
    if op == "grad_filter":
        _, _, g = grad._check(spec.input_shape, spec.kernel_shape, b, *args)
        return (grad.grad_filter_fast(a, b, spec.kernel_shape, g),
                grad.grad_filter_fast(a, b, spec.kernel_shape, g, absolute=True))
    _, _, g = grad._check(spec.input_shape, spec.kernel_shape, a, *args)
    return (grad.grad_input_fast(a, b, spec.input_shape, g),
            grad.grad_input_fast(a, b, spec.input_shape, g, absolute=True))


def method_of(spec: ConvSpec) -> str:
    """The adapter method that computes the spec's op (its name is the op's)."""
    return op_of(spec)


def offers(adapter: Any, op: str) -> bool:
    """Does the adapter have a method for `op`? (conv2d is required; the others are optional.)"""
    if op not in OPS:
        return False
    return callable(getattr(adapter, op, None))


def unsupported_reason(adapter: Any, spec: ConvSpec) -> str | None:
    """Why the adapter cannot run this case (a missing op method, or its own `supports`), or None."""
    if not offers(adapter, method_of(spec)):
        return f"adapter has no {method_of(spec)}"
    return adapter.supports(spec)  # type: ignore[no-any-return]


def bind(adapter: Any, spec: ConvSpec, values: Inputs) -> tuple[Callable[[], Any], Callable[[Any], np.ndarray]]:
    """(call, fetch): `call()` runs the op once (the part that is timed), `fetch` makes its result an array."""
    op = op_of(spec)
    prepare = getattr(adapter, "prepare" if op == "conv2d" else f"prepare_{op}", None)
    if callable(prepare):
        prepared = prepare(*values, spec)
        return prepared.call, prepared.fetch
    method = getattr(adapter, method_of(spec))
    return (lambda: method(*values, spec)), np.asarray
