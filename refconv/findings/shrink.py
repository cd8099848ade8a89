"""Shrink a failing case to a minimal one that fails the same way (greedy, hypothesis-style passes).

`shrink(spec, still_fails, budget)` tries simpler variants of the case and keeps each one for which
`still_fails(candidate)` is true, until a whole round of passes changes nothing or `budget` calls are spent.
Every candidate is a valid ConvSpec (constructed, so groups always divide the channels) and strictly
simpler than the current case by `cost`, so shrinking always ends. The passes, in order:

1. all at once: every size field to 1, strides and dilations (1, 1), no bias, no activation, float32,
   NHWC, VALID (one call; a bug that needs none of it is minimal at once);
2. per integer field (n, h, w, c_in, c_out, kh, kw, each stride and dilation): 1 first, then a binary
   search for the smallest failing value, then value - 1;
3. groups: fewer groups with the channels per group kept (a depthwise case stays depthwise), or groups 1;
   channels per group toward 1 with groups kept;
4. flags and kinds: bias off, activation off, dtype float32 (then float64), layout NHWC, padding
   VALID or SAME instead of explicit pads, explicit pads toward 0, SAME -> VALID, input seed 0.

"Fails the same way" is the caller's: `refconv.hunt` asks the adapter's worker and compares outcomes.

>>> spec = ConvSpec(n=3, h=9, w=7, c_in=4, c_out=6, kh=3, kw=3, strides=(1, 2))
>>> shrink(spec, lambda s: s.n >= 2 and s.strides[1] > s.strides[0]).id
'n2-1x1x1-k1x1x1-s1x2-valid-f32-nobias'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from refconv.errors import SpecError
from refconv.spec import ConvSpec

Changes = dict[str, Any]

INT_FIELDS = ("n", "h", "w", "c_in", "c_out", "kh", "kw")
PAIR_FIELDS = ("strides", "dilations")
DTYPE_RANK = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3}
LAYOUT_RANK = {"NHWC": 0, "NCHW": 1, "channels_last": 2}
PADDING_RANK = {"VALID": 0, "SAME": 1}


def cost(spec: ConvSpec) -> tuple[int, int]:
    """How complex a case is: (sum of its sizes, sum of its flags and kinds' ranks); shrinking lowers it."""
    sizes = sum(getattr(spec, f) for f in INT_FIELDS) + sum(spec.strides) + sum(spec.dilations) + spec.groups
    pads = 2 if isinstance(spec.padding, str) else 3 + sum(sum(p) for p in spec.padding)
    kinds = (int(spec.bias) + int(spec.activation is not None) + DTYPE_RANK[spec.dtype]
             + LAYOUT_RANK[spec.layout] + PADDING_RANK.get(str(spec.padding), pads) + int(spec.seed != 0))
    return (sizes, kinds)


def simpler(spec: ConvSpec, changes: Changes) -> ConvSpec | None:
    """The case with these changes if it is valid and strictly simpler, else None."""
    try:
        candidate = spec.replace(name="", **changes)
    except (SpecError, TypeError, ValueError):
        return None
    return candidate if cost(candidate) < cost(spec) else None


def _toward_one(value: int) -> Iterator[int]:
    """1, then halving distances toward the value (binary-search order), then value - 1."""
    if value <= 1:
        return
    yield 1
    low, high = 1, value
    while high - low > 1:
        mid = (low + high) // 2
        yield mid
        low = mid
    if value - 1 > 1:
        yield value - 1


def _all_at_once(spec: ConvSpec) -> Iterator[Changes]:
    yield {**{f: 1 for f in INT_FIELDS}, "strides": (1, 1), "dilations": (1, 1), "groups": 1, "bias": False,
           "activation": None, "dtype": "float32", "layout": "NHWC", "padding": "VALID", "seed": 0}


def _groups(spec: ConvSpec) -> Iterator[Changes]:
    g = spec.groups
    per_in, per_out = spec.c_in // g, spec.c_out // g
    if g > 1:
        for fewer in (1, *range(2, g)):
            if g % fewer == 0 or fewer == 1:
                yield {"groups": fewer, "c_in": per_in * fewer, "c_out": per_out * fewer}
        yield {"groups": 1}
    for per in _toward_one(per_in):
        yield {"c_in": per * g}
    for per in _toward_one(per_out):
        yield {"c_out": per * g}


def _integers(spec: ConvSpec) -> Iterator[Changes]:
    for name in INT_FIELDS:
        for value in _toward_one(getattr(spec, name)):
            yield {name: value}
    for name in PAIR_FIELDS:
        pair = getattr(spec, name)
        if pair != (1, 1):
            yield {name: (1, 1)}
        for axis in (0, 1):
            for value in _toward_one(pair[axis]):
                yield {name: (value, pair[1]) if axis == 0 else (pair[0], value)}


def _kinds(spec: ConvSpec) -> Iterator[Changes]:
    yield {"bias": False}
    yield {"activation": None}
    yield {"dtype": "float32"}
    yield {"dtype": "float64"}
    yield {"layout": "NHWC"}
    if not isinstance(spec.padding, str):
        yield {"padding": "VALID"}
        yield {"padding": "SAME"}
        (top, bottom), (left, right) = spec.padding
        pads = [top, bottom, left, right]
        for i, value in enumerate(pads):
            for smaller in (0, *range(1, value)):
                if smaller < value:
                    new = pads[:i] + [smaller] + pads[i + 1:]
                    yield {"padding": ((new[0], new[1]), (new[2], new[3]))}
    elif spec.padding == "SAME":
        yield {"padding": "VALID"}
    yield {"seed": 0}


PASSES: tuple[Callable[[ConvSpec], Iterator[Changes]], ...] = (_all_at_once, _integers, _groups, _kinds)


class _Calls:
    """still_fails with a cache by case id, a call budget and an optional deadline (time.monotonic)."""

    def __init__(self, still_fails: Callable[[ConvSpec], bool], budget: int, deadline: float | None) -> None:
        self.still_fails, self.budget, self.deadline = still_fails, budget, deadline
        self.calls = 0
        self.seen: dict[str, bool] = {}

    @property
    def spent(self) -> bool:
        return self.calls >= self.budget or (self.deadline is not None and time.monotonic() >= self.deadline)

    def __call__(self, spec: ConvSpec) -> bool:
        if spec.id not in self.seen:
            self.calls += 1
            self.seen[spec.id] = bool(self.still_fails(spec))
        return self.seen[spec.id]


def shrink(spec: ConvSpec, still_fails: Callable[[ConvSpec], bool], budget: int = 300,
           deadline: float | None = None) -> ConvSpec:
    """The simplest case found that still fails (the input case if nothing simpler does); `budget` calls at most."""
    calls = _Calls(still_fails, budget, deadline)
    current = spec.replace(name="")
    changed = True
    while changed and not calls.spent:
        changed = False
        for make in PASSES:
            for changes in make(current):
                if calls.spent:
                    return current
                candidate = simpler(current, changes)
                if candidate is not None and calls(candidate):
                    current, changed = candidate, True
                    break  # regenerate the pass's candidates from the new case
            if changed:
                break
    return current
