"""The exhaustive padding grid: every per-axis geometry of small convolutions, paired into 2D cases.

Per axis: input 1..8, kernel 1..5, stride 1..4, dilation 1..3, and padding SAME, VALID or one of a
few explicit (before, after) pairs. A ConvSpec's SAME/VALID applies to both axes, so axes are paired
within one padding kind (explicit pads pair with any explicit pads). Each axis setting appears exactly
once as rows and once as columns; the column partner is chosen so that all four pairings of odd/even
padding totals occur. This covers every per-axis (out, before, after) geometry without the full
cartesian square (2880 2D cases instead of millions).

>>> len(axis_settings())
2880
>>> cases = grid_cases()
>>> len(cases), cases[0].id
(2880, 'n1-1x3x1-k1x2x1-s1x2-same-f32-d1x2-r1')
"""

from __future__ import annotations

import itertools
import random
from typing import NamedTuple

from refconv.padding import Axis, axis
from refconv.spec import ConvSpec, SpecError

SIZES = range(1, 9)
KERNELS = range(1, 6)
STRIDES = range(1, 5)
DILATIONS = range(1, 4)
EXPLICIT_PADS = ((0, 1), (1, 0), (1, 1), (2, 3))
PADDINGS: tuple[str | tuple[int, int], ...] = ("SAME", "VALID", *EXPLICIT_PADS)
CHANNELS = ((1, 1), (1, 2), (2, 1), (2, 2))  # (c_in, c_out), cycled over the cases


class AxisSetting(NamedTuple):
    """One axis of a case: input size, kernel, stride, dilation and padding."""

    size: int
    k: int
    s: int
    d: int
    padding: str | tuple[int, int]

    @property
    def kind(self) -> str:
        return self.padding if isinstance(self.padding, str) else "EXPLICIT"

    @property
    def geometry(self) -> Axis:
        return axis(self.padding, self.size, self.k, self.s, self.d)

    @property
    def odd_total(self) -> bool:
        g = self.geometry
        return (g.before + g.after) % 2 == 1


def axis_settings() -> list[AxisSetting]:
    """Every per-axis combination, in a fixed order."""
    return [AxisSetting(*t) for t in itertools.product(SIZES, KERNELS, STRIDES, DILATIONS, PADDINGS)]


def axis_geometries() -> set[tuple[int, int, int]]:
    """The distinct (out, before, after) geometries the per-axis grid covers."""
    return {tuple(a.geometry) for a in axis_settings()}  # type: ignore[misc]


def _partners(group: list[AxisSetting], seed: int) -> list[AxisSetting]:
    """A fixed pseudo-random permutation of `group` to serve as column axes.

    A seeded shuffle (not a rotation) so that odd and even padding totals meet in all four pairings;
    tests/test_grid.py proves they do.
    """
    partners = list(group)
    random.Random(seed).shuffle(partners)
    return partners


def _spec(i: int, rows: AxisSetting, cols: AxisSetting) -> ConvSpec:
    c_in, c_out = CHANNELS[i % len(CHANNELS)]
    if rows.kind == "EXPLICIT":
        padding: object = (rows.padding, cols.padding)
    else:
        padding = rows.padding
    return ConvSpec(
        n=1, h=rows.size, w=cols.size, c_in=c_in, c_out=c_out, kh=rows.k, kw=cols.k,
        strides=(rows.s, cols.s), dilations=(rows.d, cols.d), padding=padding,  # type: ignore[arg-type]
        seed=i + 1, name=f"grid_{i}",
    )


def axis_pairs() -> list[tuple[AxisSetting, AxisSetting]]:
    """(rows, cols) pairs: each axis setting once as rows and once as columns, within a padding kind."""
    settings = axis_settings()
    pairs: list[tuple[AxisSetting, AxisSetting]] = []
    # Empty axes pair with empty axes, so every non-empty axis geometry is checked on values.
    for seed, (kind, empty) in enumerate(itertools.product(("SAME", "VALID", "EXPLICIT"), (False, True))):
        group = [a for a in settings if a.kind == kind and (a.geometry.out == 0) == empty]
        pairs.extend(zip(group, _partners(group, seed), strict=True))
    return pairs


def grid_cases(count: int | None = None) -> list[ConvSpec]:
    """The 2D grid (float32, batch 1, 1-2 channels); `count` takes an evenly spread subset."""
    cases = [_spec(i, rows, cols) for i, (rows, cols) in enumerate(axis_pairs())]
    if count is None or count >= len(cases):
        return cases
    if count <= 0:
        raise SpecError(f"grid count must be a positive integer, got {count}")
    return [cases[(j * len(cases)) // count] for j in range(count)]
