"""Special values as cases: NaN, +/-Inf, signed zeros, subnormals and near-overflow values in the input.

A case's `values` field ("<kind>_<place>", refconv.spec.VALUES) says which special values its input x holds
and where; `apply` plants them into the seeded inputs (refconv.inputs.make_inputs calls it), so the pattern
is part of the case id and every process regenerates the same arrays. The semantics they check, and
the engines' results, are in docs/special-values.md. In short, per IEEE 754 with padding contributing
exact zeros: an output is NaN exactly when its window holds a NaN, an Inf times a zero weight, or Infs
whose products have both signs; it is +/-Inf when its products hold an Inf of one sign; and it overflows to
Inf where the exact result rounds past the dtype's largest value.

Kinds (all in input channel 0 of every image; the kernel stays finite, see the doc for why):
- nan, inf, ninf: NaN, +Inf or -Inf at the place's pixels;
- infmix: +Inf at the place's pixels and -Inf at their right-hand neighbours (windows holding both: NaN);
- inf0: +Inf at the place's pixels and the kernel's centre taps of channel 0 set to zero (Inf * 0 = NaN);
- negzero: -0.0 at the place's pixels and +0.0 around them in channel 0;
- subnormal: subnormals of the dtype (1/2 to 1/32 of its smallest normal) at the place's pixels, zeros around;
- huge: half the dtype's largest value at the place's pixels, so outputs with a kernel tap above 2 overflow
  (the source never pairs it with `ring`: two huge pixels in one window overflow or not by summation order).
Places: `mid` (the centre pixel: inside every window that reaches it), `corner` (the top-left and
bottom-right pixels: on the border), `ring` (every pixel of the outermost ring and none inside: only the
pixels next to the padding).

>>> from refconv.spec import ConvSpec
>>> x, w, b = apply(ConvSpec(n=1, h=4, w=4, c_in=1, c_out=1, kh=3, kw=3, values="nan_mid"), *_plain())
>>> int(np.isnan(x).sum()), (int(np.isnan(x[0, 2, 2, 0])))
(1, 1)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refconv.spec import VALUE_KINDS, VALUE_PLACES, ConvSpec

# Geometries of the special source: stride 1 3x3 with many channels (where Winograd-style fast paths
# live), stride 2, a 5x5 kernel, dilation, depthwise, a 1x1 VALID conv; SAME puts padding next to the ring.
GEOMETRIES: tuple[dict[str, Any], ...] = (
    dict(n=1, h=8, w=8, c_in=4, c_out=8, kh=3, kw=3),
    dict(n=1, h=12, w=12, c_in=16, c_out=16, kh=3, kw=3),
    dict(n=2, h=9, w=9, c_in=3, c_out=4, kh=3, kw=3, strides=(2, 2)),
    dict(n=1, h=11, w=11, c_in=4, c_out=4, kh=5, kw=5),
    dict(n=1, h=10, w=10, c_in=2, c_out=4, kh=3, kw=3, dilations=(2, 2)),
    dict(n=1, h=8, w=8, c_in=8, c_out=8, kh=3, kw=3, groups=8),
    dict(n=1, h=7, w=7, c_in=2, c_out=3, kh=1, kw=1, padding="VALID"),
)
DTYPES = ("float16", "bfloat16", "float32", "float64")
DEFAULT_COUNT = 24  # `special` alone: every kind on every place once (a small budget for the default run)


def special_cases(count: int | None = None, seed: int = 0) -> list[ConvSpec]:
    """The first `count` cases (DEFAULT_COUNT when None) of a fixed rotation through every (kind, place, geometry).

    Case i has kind i mod 8, place i mod 3 and geometry i mod 7 (8, 3 and 7 are coprime, so the 168 indices
    meet every triple once), and dtype (i div 7) mod 4. So the first 8 cases hold every kind, the first 24
    every (kind, place) pair and indices 0-27 every (geometry, dtype) pair. `huge` never pairs with `ring`
    (two huge values in one window overflow or not by summation order), which leaves 161 cases in all.
    `seed` seeds the random parts of x and w.
    """
    count = DEFAULT_COUNT if count is None else count
    out: dict[str, ConvSpec] = {}
    for i in range(len(VALUE_KINDS) * len(VALUE_PLACES) * len(GEOMETRIES)):
        if len(out) == count:
            break
        kind, place = VALUE_KINDS[i % len(VALUE_KINDS)], VALUE_PLACES[i % len(VALUE_PLACES)]
        if (kind, place) == ("huge", "ring"):
            continue
        spec = ConvSpec(**GEOMETRIES[i % len(GEOMETRIES)], dtype=DTYPES[(i // len(GEOMETRIES)) % len(DTYPES)],
                        bias=i % 5 != 4, seed=seed, values=f"{kind}_{place}", name=f"special_{kind}_{place}")
        out.setdefault(spec.id, spec)
    return list(out.values())


def _plain() -> tuple[np.ndarray, np.ndarray, None]:
    """A 4x4 one-channel input of ones and a 3x3 kernel of ones (for the doctest)."""
    return np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), None


def pixels(h: int, w: int, place: str) -> list[tuple[int, int]]:
    """The (row, col) pixels a place names in an h x w image."""
    if place == "mid":
        return [(h // 2, w // 2)]
    if place == "corner":
        return sorted({(0, 0), (h - 1, w - 1)})
    ring = {(i, j) for i in range(h) for j in range(w) if i in (0, h - 1) or j in (0, w - 1)}
    return sorted(ring)


def _finfo(x: np.ndarray) -> Any:
    if x.dtype.name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.finfo(x.dtype)
    return np.finfo(x.dtype)


def apply(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The seeded inputs with the case's special values planted (copies; `normal` returns them as they are)."""
    if spec.values == "normal":
        return x, w, b
    kind, _, place = spec.values.partition("_")
    x, w = x.copy(), w.copy()
    spots = pixels(x.shape[1], x.shape[2], place)
    rows, cols = (np.array(a, dtype=np.intp) for a in zip(*spots, strict=True))
    fi = _finfo(x)
    if kind in ("negzero", "subnormal"):
        x[:, :, :, 0] = 0.0  # the planted values alone make channel 0's contribution
    if kind == "subnormal":
        x[:, rows, cols, 0] = _subnormals(fi, len(spots), x.dtype)
    else:
        x[:, rows, cols, 0] = {"nan": np.nan, "inf": np.inf, "ninf": -np.inf, "infmix": np.inf, "inf0": np.inf,
                               "negzero": -0.0, "huge": float(fi.max) / 2.0}[kind]
    if kind == "infmix":  # -Inf right of each +Inf (where there is room)
        right = cols + 1
        inside = right < x.shape[2]
        x[:, rows[inside], right[inside], 0] = -np.inf
    if kind == "inf0":
        w[w.shape[0] // 2, w.shape[1] // 2, 0, :] = 0.0
    return x, w, b


def _subnormals(fi: Any, count: int, dtype: Any) -> np.ndarray:
    """`count` subnormals of the dtype, cycling through 1/2 to 1/32 of its smallest normal (exact in every dtype).

    Large subnormals on purpose: flushing one to zero errs by far more than the tolerance's C * tiny, in
    float64 and float32 (C = 16) as in the 16-bit dtypes.
    """
    fractions = np.array([1 / 2, 3 / 8, 5 / 16, 1 / 4, 3 / 16, 1 / 8, 1 / 16, 1 / 32], dtype=np.float64)
    return (float(fi.smallest_normal) * fractions[np.arange(count) % len(fractions)]).astype(dtype)
