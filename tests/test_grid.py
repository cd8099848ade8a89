"""The exhaustive padding grid: size, per-axis coverage, odd/even pairings, selection."""

from __future__ import annotations

from collections import Counter

import pytest

from refconv.cases import select
from refconv.errors import SpecError
from refconv.grid import PADDINGS, axis_geometries, axis_pairs, axis_settings, grid_cases
from refconv.padding import Axis, axis, geometry


def test_grid_sizes() -> None:
    # 8 inputs x 5 kernels x 4 strides x 3 dilations x 6 paddings per axis, each used once as rows.
    assert len(axis_settings()) == 8 * 5 * 4 * 3 * len(PADDINGS) == 2880
    assert len(grid_cases()) == 2880


def test_distinct_axis_geometries() -> None:
    geometries = axis_geometries()
    assert len(geometries) == 112
    # hand-checked members: SAME odd total puts the extra pixel after; VALID empty; explicit kept as given
    assert (3, 0, 1) in geometries  # SAME, in 6, k 3, s 2
    assert (0, 0, 0) in geometries  # VALID, input smaller than the kernel
    assert (1, 2, 3) in geometries  # explicit (2, 3) on a 1-pixel input, k 5


def test_every_axis_geometry_appears_in_the_2d_cases() -> None:
    """The proof the brief asks for: each per-axis (out, before, after) of the 1D grid is a row or column axis."""
    seen: set[Axis] = set()
    for spec in grid_cases():
        rows, cols = geometry(spec)
        seen.update((rows, cols))
    assert {Axis(*g) for g in axis_geometries()} <= seen


def test_each_axis_setting_is_rows_once_and_cols_once() -> None:
    pairs = axis_pairs()
    rows = Counter(r for r, _ in pairs)
    cols = Counter(c for _, c in pairs)
    assert set(rows) == set(cols) == set(axis_settings())
    assert set(rows.values()) == set(cols.values()) == {1}
    assert all(r.kind == c.kind for r, c in pairs)


def test_cases_match_their_axis_settings() -> None:
    for spec, (r, c) in zip(grid_cases(), axis_pairs(), strict=True):
        rows, cols = geometry(spec)
        assert rows == axis(r.padding, r.size, r.k, r.s, r.d)
        assert cols == axis(c.padding, c.size, c.k, c.s, c.d)
        assert spec.dtype == "float32" and spec.n == 1 and spec.c_in <= 2 and spec.c_out <= 2


@pytest.mark.parametrize("kind", ["SAME", "EXPLICIT"])
def test_all_four_odd_even_pairings_appear(kind: str) -> None:
    pairings = {(r.odd_total, c.odd_total) for r, c in axis_pairs() if r.kind == kind}
    assert pairings == {(False, False), (False, True), (True, False), (True, True)}


def test_empty_axes_pair_with_empty_axes() -> None:
    """So every non-empty geometry is also checked on values, not hidden behind an empty partner."""
    assert all((r.geometry.out == 0) == (c.geometry.out == 0) for r, c in axis_pairs())


def test_grid_source_and_subset() -> None:
    assert [s.id for s in select("grid")] == [s.id for s in grid_cases()]
    subset = grid_cases(100)
    assert len(subset) == 100 and len({s.id for s in subset}) == 100
    assert {s.padding_kind for s in subset} == {"SAME", "VALID", "EXPLICIT"}
    assert [s.id for s in select("grid:100")] == [s.id for s in subset]
    with pytest.raises(SpecError, match="grid count"):
        grid_cases(-1)


def test_grid_is_deterministic() -> None:
    assert [s.id for s in grid_cases()] == [s.id for s in grid_cases()]
