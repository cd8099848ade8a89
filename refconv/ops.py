"""What a case checks: one seam between a ConvSpec and the reference, the inputs and an adapter's call.

A ConvSpec describes a forward convolution; the op it checks (today `conv2d`; the training ops join
here) decides which seeded inputs it has, which float64 reference and error bound it is held against,
and which adapter method is called. The worker, the runner and the conformance check go through these
functions, so a new op is added in one place.

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

from refconv.inputs import make_inputs
from refconv.reference import for_spec
from refconv.spec import ConvSpec

Inputs = tuple[Any, ...]


def op_of(spec: ConvSpec) -> str:
    """The op a spec checks ('conv2d' until ConvSpec carries its own)."""
    return str(getattr(spec, "op", "conv2d"))


def inputs(spec: ConvSpec) -> Inputs:
    """The case's seeded inputs, bit-identical in every process: (x, w, b) for conv2d."""
    return make_inputs(spec)


def reference(spec: ConvSpec, values: Inputs) -> tuple[np.ndarray, np.ndarray]:
    """(expected, bound) in float64 for the case's op."""
    return for_spec(spec, *values)


def unsupported_reason(adapter: Any, spec: ConvSpec) -> str | None:
    """Why the adapter cannot run this case (its own `supports`, or a missing op method), or None."""
    return adapter.supports(spec)  # type: ignore[no-any-return]


def bind(adapter: Any, spec: ConvSpec, values: Inputs) -> tuple[Callable[[], Any], Callable[[Any], np.ndarray]]:
    """(call, fetch): `call()` runs the op once (the part that is timed), `fetch` makes its result an array."""
    prepare = getattr(adapter, "prepare", None)
    if callable(prepare):
        prepared = prepare(*values, spec)
        return prepared.call, prepared.fetch
    return (lambda: adapter.conv2d(*values, spec)), np.asarray
