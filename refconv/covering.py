"""Covering arrays: rows in which every allowed combination of levels of every chosen factor set occurs.

A small IPOG-style greedy generator with constraints, shared by the `cover` source (refconv.cover) and its
training-op part (refconv.grad_cases). Factors are level indices 0 .. levels-1; `allowed(row)` judges
partial rows (None = a free position). The same rng seed always gives the same rows.

>>> rows = covering_array([2, 2, 2], interactions(["a", "b", "c"]), random.Random(0))
>>> all({(r[i], r[j]) for r in rows} == {(0, 0), (0, 1), (1, 0), (1, 1)} for i, j in [(0, 1), (0, 2), (1, 2)])
True
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Row = list[int | None]
Allowed = Callable[[Sequence[int | None]], bool]


def interactions(names: Sequence[str], strength: int = 2, strong: Sequence[str] = (),
                 strong_strength: int = 3) -> list[tuple[int, ...]]:
    """Factor-index sets to cover: every `strength`-set of all factors plus every `strong_strength`-set of `strong`."""
    index = {name: i for i, name in enumerate(names)}
    sets = set(itertools.combinations(range(len(names)), strength))
    sets |= set(itertools.combinations(sorted(index[s] for s in strong), strong_strength))
    return sorted(sets)


def covering_array(levels: Sequence[int], sets: Iterable[tuple[int, ...]], rng: random.Random,
                   allowed: Allowed = lambda row: True) -> list[list[int]]:
    """Rows (level indices) in which every allowed level combination of every factor set occurs (IPOG).

    Factors are added one at a time: each existing row gets the level that covers most uncovered
    combinations ending at the new factor (horizontal growth), and what is left goes into free positions
    of rows or into new rows (vertical growth). `allowed(row)` judges partial rows (None = free).
    """
    by_last: dict[int, list[tuple[int, ...]]] = {}
    for s in {tuple(sorted(s)) for s in sets} | {(p,) for p in range(len(levels))}:
        by_last.setdefault(s[-1], []).append(s)
    rows: list[Row] = []
    for p in range(len(levels)):
        mine = sorted(by_last.get(p, []))
        todo = _required(levels, mine, allowed)
        for row in rows:
            _grow_horizontally(row, p, levels[p], mine, todo, rng, allowed)
        _grow_vertically(rows, len(levels), mine, todo, rng, allowed)
    return [_fill(row, levels, rng, allowed) for row in rows]


def _partial(width: int, factors: tuple[int, ...], values: tuple[int, ...]) -> Row:
    row: Row = [None] * width
    for f, v in zip(factors, values, strict=True):
        row[f] = v
    return row


Target = tuple[tuple[int, ...], tuple[int, ...]]  # (factor indices, their level indices)


def _required(levels: Sequence[int], sets: list[tuple[int, ...]], allowed: Allowed) -> set[Target]:
    todo: set[Target] = set()
    for s in sets:
        for values in itertools.product(*(range(levels[f]) for f in s)):
            if allowed(_partial(len(levels), s, values)):
                todo.add((s, values))
    return todo


def _covered(row: Row, sets: list[tuple[int, ...]]) -> Iterable[tuple[tuple[int, ...], tuple[int, ...]]]:
    for s in sets:
        values = tuple(row[f] for f in s)
        if None not in values:
            yield s, values  # type: ignore[misc]


def _grow_horizontally(row: Row, p: int, count: int, sets: list[tuple[int, ...]], todo: set[Any],
                       rng: random.Random, allowed: Allowed) -> None:
    best, best_gain = None, -1
    # every set here ends at p: the row's values on the rest of each set are fixed while p varies
    heads = [(s, tuple(row[f] for f in s[:-1])) for s in sets]
    heads = [(s, head) for s, head in heads if None not in head]
    for v in rng.sample(range(count), count):  # a seeded order breaks ties
        row[p] = v
        if not allowed(row):
            continue
        gain = sum((s, (*head, v)) in todo for s, head in heads)
        if gain > best_gain:
            best, best_gain = v, gain
    row[p] = best
    if best is not None:
        todo.difference_update(_covered(row, sets))


def _grow_vertically(rows: list[Row], width: int, sets: list[tuple[int, ...]], todo: set[Any],
                     rng: random.Random, allowed: Allowed) -> None:
    for key in rng.sample(sorted(todo), len(todo)):
        if key not in todo:
            continue
        s, values = key
        for row in rows:
            if all(row[f] in (None, v) for f, v in zip(s, values, strict=True)):
                trial = list(row)
                for f, v in zip(s, values, strict=True):
                    trial[f] = v
                if allowed(trial):
                    row[:] = trial
                    break
        else:
            row = _partial(width, s, values)
            rows.append(row)
        todo.difference_update(_covered(row, sets))


def _fill(row: Row, levels: Sequence[int], rng: random.Random, allowed: Allowed) -> list[int]:
    """Free positions get a seeded allowed level."""
    for p, value in enumerate(row):
        if value is None:
            for v in rng.sample(range(levels[p]), levels[p]):
                row[p] = v
                if allowed(row):
                    break
            else:
                raise AssertionError(f"no allowed level for factor {p} in row {row}")
    return [int(v) for v in row]  # type: ignore[arg-type]
