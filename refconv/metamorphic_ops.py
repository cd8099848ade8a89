"""Metamorphic relations of the training ops: identities between an engine's own conv2d, gradients and
transposed conv that hold in exact arithmetic, so they need no reference output.

- `adjoint`: <conv2d(x, w), dy> = <x, grad_input(dy, w)> = <w, grad_filter(x, dy)>, all three computed by
  the engine (the inner products in float64);
- `grad_batch_split`: the filter gradient of a batch is the sum of its halves' filter gradients, and the
  input gradient of a batch is its halves' input gradients stacked;
- `transpose_of_valid`: for a VALID forward case, the engine's transposed conv of its own conv2d output
  equals its input gradient of that output (the same map through two APIs).

Each takes the adapter (any object with conv2d and the op methods) and a forward spec; an engine without
a needed method, that declines a derived case or that raises on one (a finding its own rows report), makes
the relation skipped with the reason. The
tolerance is the bound model: each computed array may err by C * eps * (its op's bound), so two sides may
differ by C * eps times the sum of the bounds they involve (`refconv.op_tolerance` C, the larger of the ops).

>>> from refconv.spec import ConvSpec
>>> import adapters
>>> r = check_op("adjoint", adapters.load("numpy"), ConvSpec(n=1, h=5, w=5, c_in=2, c_out=2, kh=3, kw=3))
>>> r.skipped
'the adapter has no grad_input'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from refconv import ops
from refconv.compare import eps, tiny, tolerance_c
from refconv.metamorphic import RelationResult
from refconv.spec import ConvSpec


class _Skip(Exception):
    """A relation that does not apply, or that the engine cannot run; the message is the reason."""


def _call(adapter: Any, spec: ConvSpec, *values: np.ndarray | None) -> np.ndarray:
    """The engine's op for `spec` on `values` as float64, or _Skip with its reason."""
    reason = ops.unsupported_reason(adapter, spec)
    if reason:
        raise _Skip(f"the {reason}" if reason.startswith("adapter has no") else reason)
    call, fetch = ops.bind(adapter, spec, values)
    return np.asarray(fetch(call()), dtype=np.float64)


def _c(spec: ConvSpec) -> float:
    fwd = _forward(spec)
    return max(tolerance_c(fwd.replace(op=op)) for op in ("conv2d", "grad_input", "grad_filter"))


def _result(name: str, spec: ConvSpec, gap: np.ndarray, scale: np.ndarray, c: float) -> RelationResult:
    ratio = np.abs(gap) / (eps(spec.dtype) * scale + tiny(spec.dtype))
    worst = float(np.nan_to_num(np.max(ratio, initial=0.0), nan=np.inf))
    return RelationResult(name, spec.id, worst <= c, bound_ratio=worst, tolerance_c=c,
                          detail="" if worst <= c else f"{int((ratio > c).sum())} / {ratio.size} values beyond")


def _forward(spec: ConvSpec) -> ConvSpec:
    return spec.replace(op="conv2d", bias=False, activation=None)


def adjoint(adapter: Any, spec: ConvSpec) -> RelationResult:
    """<conv2d(x, w), dy> == <x, grad_input(dy, w)> == <w, grad_filter(x, dy)> through one engine."""
    fwd = _forward(spec)
    x, w, _ = ops.inputs(fwd)
    dy = ops.gradient(fwd)
    y = _call(adapter, fwd, x, w, None)
    gi = _call(adapter, fwd.replace(op="grad_input"), dy, w)
    gf = _call(adapter, fwd.replace(op="grad_filter"), x, dy)
    x64, w64, dy64 = (np.asarray(a, dtype=np.float64) for a in (x, w, dy))
    _, b_y = ops.reference(fwd, (x, w, None))
    _, b_gi = ops.reference(fwd.replace(op="grad_input"), (dy, w))
    _, b_gf = ops.reference(fwd.replace(op="grad_filter"), (x, dy))
    inner = np.array([np.sum(y * dy64), np.sum(x64 * gi), np.sum(w64 * gf)])
    s_y, s_gi, s_gf = np.sum(np.abs(dy64) * b_y), np.sum(np.abs(x64) * b_gi), np.sum(np.abs(w64) * b_gf)
    gap = np.array([inner[0] - inner[1], inner[0] - inner[2]])
    return _result("adjoint", spec, gap, np.array([s_y + s_gi, s_y + s_gf]), _c(spec))


def grad_batch_split(adapter: Any, spec: ConvSpec) -> RelationResult:
    """grad_filter over a batch == the sum over its halves; grad_input of a batch == its halves stacked."""
    if spec.n < 2:
        raise _Skip("needs a batch of 2 or more")
    fwd, k = _forward(spec), spec.n // 2
    x, w, _ = ops.inputs(fwd)
    dy = ops.gradient(fwd)
    halves = [fwd.replace(n=k), fwd.replace(n=spec.n - k)]
    parts = [(x[:k], dy[:k]), (x[k:], dy[k:])]
    gf = _call(adapter, fwd.replace(op="grad_filter"), x, dy)
    gf_sum = sum(_call(adapter, h.replace(op="grad_filter"), xs, ds) for h, (xs, ds) in zip(halves, parts, strict=True))
    gi = _call(adapter, fwd.replace(op="grad_input"), dy, w)
    gi_cat = np.concatenate([_call(adapter, h.replace(op="grad_input"), ds, w) for h, (_, ds) in zip(halves, parts,
                                                                                                        strict=True)])
    _, b_gf = ops.reference(fwd.replace(op="grad_filter"), (x, dy))
    _, b_gi = ops.reference(fwd.replace(op="grad_input"), (dy, w))
    gap = np.concatenate([(gf - gf_sum).ravel(), (gi - gi_cat).ravel()])
    scale = np.concatenate([3 * b_gf.ravel(), 2 * b_gi.ravel()])  # the whole and two halves, each within its bound
    return _result("grad_batch_split", spec, gap, scale, _c(spec))


def transpose_of_valid(adapter: Any, spec: ConvSpec) -> RelationResult:
    """transpose(conv2d(x, w), w) == grad_input(conv2d(x, w), w) for a VALID case, both through the engine."""
    fwd = _forward(spec).replace(padding="VALID")
    if 0 in ops.gradient(fwd).shape:
        raise _Skip("the VALID forward output is empty")
    x, w, _ = ops.inputs(fwd)
    y = _call(adapter, fwd, x, w, None).astype(x.dtype)
    tr = _call(adapter, fwd.replace(op="transpose"), y, w)
    gi = _call(adapter, fwd.replace(op="grad_input"), y, w)
    _, bound = ops.reference(fwd.replace(op="grad_input"), (y, w))
    return _result("transpose_of_valid", spec, tr - gi, 2 * bound, _c(spec))


OP_RELATIONS: dict[str, Callable[[Any, ConvSpec], RelationResult]] = {
    f.__name__: f for f in (adjoint, grad_batch_split, transpose_of_valid)
}


def check_op(name: str, adapter: Any, spec: ConvSpec) -> RelationResult:
    """Run one training-op relation on a forward spec; a missing method or a decline makes it skipped."""
    try:
        return OP_RELATIONS[name](adapter, spec)
    except _Skip as exc:
        return RelationResult(name, spec.id, True, skipped=str(exc))
    except Exception as exc:  # a raise is the direct check's finding (a row); the values identity cannot be judged
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        why = f"the engine raised on a side: {type(exc).__name__}: {first}"
        return RelationResult(name, spec.id, True, skipped=why)

