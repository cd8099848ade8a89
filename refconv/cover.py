"""Coverage-directed cases: seeded covering sets over the classes of values that matter for conv bugs.

A case is first an abstract row of factor levels, then a concrete ConvSpec. The classes ("fine" values)
are per axis: output size (1, 2, 3, 4+, empty), padding total and side (0, even, odd after, odd before),
stride (1-4), dilation (1, 2+) and kernel against stride and input (1x1, shorter than / equal to / longer
than the stride, longer than the input); and per case: padding kind, batch (1, 2, odd), c_in and c_out
per group (1, 2, odd, >= 64), groups (1, grouped, depthwise), dtype, layout, bias, activation.

Three parts, each a covering array built by a small IPOG-style greedy generator (`covering_array`):
- `breadth`: every pair of values of any two of the 19 fine factors occurs in some case (strength 2);
- `degenerate`: in the default configuration (float32, NHWC or NCHW, groups 1, no dilation), every
  combination of three joint classes occurs (strength 3, i.e. their full product) in each of `REPLICAS`
  differently realised copies, with every pair of the remaining factors covered too. The joint classes
  are which of batch and input channels are 1, the stride relation (equal, row < column with row 1,
  row > column with column 1) and which output axes are 1: conjunctions of degenerate values where
  silent wrong-value bugs live (docs/cases.md has the measurements that chose this).
- `grad` (`refconv.grad_cases.grad_cover_cases`): cases in the training ops, each with an axis whose forward
  output is empty or where a window reads only padding (an explicit pad of k_eff or more at one end); they
  keep their op when a selection keeps `cover` forward-only.
Rows become specs by drawing, per axis, a (size, kernel, stride, dilation, pads) among the enumerated
realisations of its class (`refconv.padding` does the arithmetic). The seed changes tie-breaking, the fill
of free positions and the concrete values; the same seed always gives the same set.

>>> specs = cover_cases(seed=0)
>>> specs == cover_cases(seed=0) and specs != cover_cases(seed=1)
True
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from refconv.covering import Allowed, covering_array, interactions
from refconv.grad_cases import grad_cover_cases
from refconv.padding import axis
from refconv.spec import ConvSpec

Choice = dict[str, tuple[Any, ...]]  # fine factor -> the fine values a level allows

# --- the fine classes ------------------------------------------------------------------------------

AXIS_FACTORS: dict[str, tuple[str, ...]] = {
    "out": ("1", "2", "3", "4+", "empty"),  # output size on the axis; empty: the input is short of the kernel
    "pad": ("0", "even", "odd_after", "odd_before"),  # total padding and where the odd pixel goes
    "s": ("1", "2", "3", "4"),
    "d": ("1", "2+"),
    # the effective kernel k_eff against the stride and the input: 1x1, shorter than, equal to or longer
    # than the stride, or longer than the input itself (only padding, or nothing, lets it fit)
    "k": ("1", "lt_s", "eq_s", "gt_s", "gt_in"),
}
GLOBAL_FACTORS: dict[str, tuple[Any, ...]] = {
    "padding": ("SAME", "VALID", "EXPLICIT"),
    "n": ("1", "2", "odd"),
    "c_in": ("1", "2", "odd", "big"),
    "c_out": ("1", "2", "odd", "big"),  # output channels per group (the channel multiplier when depthwise)
    "groups": ("1", "grouped", "depthwise"),
    "dtype": ("float32", "float64", "float16", "bfloat16"),
    "layout": ("NHWC", "NCHW", "channels_last"),
    "bias": (True, False),
    "activation": (None, "relu"),
}
FINE: dict[str, tuple[Any, ...]] = {
    **{f"{name}_{ax}": levels for ax in "hw" for name, levels in AXIS_FACTORS.items()},
    **GLOBAL_FACTORS,
}
_AXIS_NAMES = tuple(AXIS_FACTORS)

MAX_SIZE, MAX_KERNEL, MAX_STRIDE, MAX_DILATION, MAX_PAD, MAX_OUT = 12, 5, 4, 3, 3, 6
BIG_CHANNELS = (64, 72, 96)
ODD_CHANNELS = (3, 5, 7)
ODD_GROUPED_CHANNELS = (9, 15)  # odd and grouped needs a proper divisor
ODD_BATCH = (3, 5)


# --- factors and parts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Factor:
    """A column of a covering array: each level allows one or more alternative sets of fine values."""

    name: str
    levels: tuple[str, ...]
    choices: tuple[tuple[Choice, ...], ...]  # per level, its alternatives


def plain(name: str, values: Sequence[Any] | None = None) -> Factor:
    """A fine factor as a column, optionally restricted to some of its values."""
    values = tuple(FINE[name] if values is None else values)
    return Factor(name, tuple(str(v) for v in values), tuple(({name: (v,)},) for v in values))


def joint(name: str, levels: dict[str, list[Choice]]) -> Factor:
    """A class over several fine factors, e.g. 'batch > 1 and one input channel'."""
    return Factor(name, tuple(levels), tuple(tuple(alternatives) for alternatives in levels.values()))


@dataclass(frozen=True)
class Part:
    """One covering array: its columns, strength 2 over all, `strength` over `strong`, realised `replicas` times."""

    name: str
    factors: tuple[Factor, ...]
    strong: tuple[str, ...] = ()
    strength: int = 3
    replicas: int = 1

    def sets(self) -> list[tuple[int, ...]]:
        """The factor-index sets whose level combinations must all occur."""
        names = [f.name for f in self.factors]
        return interactions(names, 2, self.strong, self.strength)


_MANY = ("2", "3", "4+")
_BIG_N, _BIG_C = ("2", "odd"), ("2", "odd", "big")
BATCH_CHANNELS = joint("batch_channels", {
    "n1_c1": [{"n": ("1",), "c_in": ("1",)}], "n1_cN": [{"n": ("1",), "c_in": _BIG_C}],
    "nN_c1": [{"n": _BIG_N, "c_in": ("1",)}], "nN_cN": [{"n": _BIG_N, "c_in": _BIG_C}],
})
STRIDES = joint("strides", {
    "equal": [{"s_h": (s,), "s_w": (s,)} for s in ("1", "2", "3")],
    "row_1_lt_col": [{"s_h": ("1",), "s_w": ("2", "3", "4")}],
    "col_1_lt_row": [{"s_h": ("2", "3", "4"), "s_w": ("1",)}],
})
OUTPUT = joint("output", {
    "full": [{"out_h": _MANY, "out_w": _MANY}], "one_row": [{"out_h": ("1",), "out_w": _MANY}],
    "one_col": [{"out_h": _MANY, "out_w": ("1",)}], "one_pixel": [{"out_h": ("1",), "out_w": ("1",)}],
})
REPLICAS = 3
BREADTH = Part("breadth", tuple(plain(name) for name in FINE), strength=2)
DEGENERATE = Part("degenerate", (
    BATCH_CHANNELS, STRIDES, OUTPUT,
    *(plain(f"{name}_{ax}") for ax in "hw" for name in ("pad", "k")),
    plain("padding"), plain("c_out"), plain("bias"), plain("activation"),
    plain("dtype", ["float32"]), plain("layout", ["NHWC", "NCHW"]), plain("groups", ["1"]),
    plain("d_h", ["1"]), plain("d_w", ["1"]),
), strong=("batch_channels", "strides", "output"), strength=3, replicas=REPLICAS)
PARTS = (BREADTH, DEGENERATE)


# --- per-axis classes ------------------------------------------------------------------------------

Realisation = tuple[int, int, int, int, tuple[int, int]]  # size, k, s, d, (before, after)


def axis_class(size: int, k: int, s: int, d: int, before: int, after: int, out: int) -> tuple[str, ...]:
    """The fine class (out, pad, s, d, k) of one concrete axis, in AXIS_FACTORS' order."""
    k_eff = (k - 1) * d + 1
    total = before + after
    pad = "0" if total == 0 else "even" if total % 2 == 0 else "odd_after" if after > before else "odd_before"
    if k_eff == 1:
        kernel = "1"
    elif k_eff > size:
        kernel = "gt_in"
    else:
        kernel = "lt_s" if k_eff < s else "eq_s" if k_eff == s else "gt_s"
    return ("empty" if out == 0 else str(out) if out <= 3 else "4+", pad, str(s), "1" if d == 1 else "2+", kernel)


@cache
def axis_table() -> dict[str, dict[tuple[str, ...], list[Realisation]]]:
    """padding kind -> axis class -> every small concrete realisation of it (in a fixed order)."""
    table: dict[str, dict[tuple[str, ...], list[Realisation]]] = {"SAME": {}, "VALID": {}, "EXPLICIT": {}}
    explicit = list(itertools.product(range(MAX_PAD + 1), repeat=2))
    for size, k, s, d in itertools.product(range(1, MAX_SIZE + 1), range(1, MAX_KERNEL + 1),
                                           range(1, MAX_STRIDE + 1), range(1, MAX_DILATION + 1)):
        if d > 1 and k == 1:
            continue  # dilation of a 1-tap kernel is no dilation
        for kind, pads in (("SAME", ["SAME"]), ("VALID", ["VALID"]), ("EXPLICIT", explicit)):
            for pad in pads:
                g = axis(pad, size, k, s, d)  # type: ignore[arg-type]
                if g.out > MAX_OUT or (kind == "EXPLICIT" and g.before + g.after >= (k - 1) * d + 1 + s):
                    continue  # keep cases small; explicit pads beyond a window plus a stride are all zeros
                key = axis_class(size, k, s, d, g.before, g.after, g.out)
                table[kind].setdefault(key, []).append((size, k, s, d, (g.before, g.after)))
    return table


@cache
def _axis_keys(kind: str, pattern: tuple[tuple[Any, ...], ...]) -> tuple[tuple[str, ...], ...]:
    """The realisable axis classes with a value from each position's choices, under a padding kind."""
    table = axis_table()[kind]
    return tuple(key for key in itertools.product(*pattern) if key in table)


# --- constraints -----------------------------------------------------------------------------------

_AXIS_FINE = frozenset(f"{n}_{ax}" for ax in "hw" for n in _AXIS_NAMES) | {"padding"}
_CHANNEL_FINE = frozenset({"c_in", "groups"})


def _options(factor: Factor, level: int | None) -> tuple[Choice, ...]:
    """The alternatives of a level, or of every level when the position is free (one union if that is exact)."""
    if level is not None:
        return factor.choices[level]
    every = tuple(c for alts in factor.choices for c in alts)
    names = {name for c in every for name in c}
    if len(names) == 1:  # a plain factor: any of its values
        (name,) = names
        values = tuple(v for c in every for v in c[name])
        return ({name: FINE[name] if values == FINE[name] else values},)
    return every


_MERGED: dict[tuple[int, ...], dict[str, tuple[Any, ...]] | None] = {}


def _merged(picks: Sequence[Choice]) -> dict[str, tuple[Any, ...]] | None:
    """Fine values allowed by all picked alternatives together (None if some fine factor has none left)."""
    key = tuple(map(id, picks))  # the alternatives are long-lived objects of the parts' factors
    if key not in _MERGED:
        _MERGED[key] = _merge(picks)
    return _MERGED[key]


def _merge(picks: Sequence[Choice]) -> dict[str, tuple[Any, ...]] | None:
    fine = dict(FINE)
    for pick in picks:
        for name, values in pick.items():
            current = fine[name]
            if values is current:
                continue
            fine[name] = kept = values if len(values) == 1 and values[0] in current else tuple(
                v for v in current if v in values)
            if not kept:
                return None
    return fine


def _channels_ok(fine: dict[str, tuple[Any, ...]]) -> bool:
    # one channel: grouped and depthwise are groups = 1; two channels leave no room for 1 < g < c_in
    return any((c != "1" or g == "1") and (c != "2" or g != "grouped") for c in fine["c_in"] for g in fine["groups"])


def _axes_ok(fine: dict[str, tuple[Any, ...]]) -> bool:
    h = tuple(fine[f"{n}_h"] for n in _AXIS_NAMES)
    w = tuple(fine[f"{n}_w"] for n in _AXIS_NAMES)
    return any(_axis_keys(k, h) and _axis_keys(k, w) for k in fine["padding"])


_CONSTRAINTS: dict[str, Allowed] = {}


def constraint(part: Part) -> Allowed:
    """`allowed(row)`: can a partial row of this part (None = free) become a valid ConvSpec? (one per part)"""
    if part.name not in _CONSTRAINTS:
        _CONSTRAINTS[part.name] = _constraint(part)
    return _CONSTRAINTS[part.name]


def _constraint(part: Part) -> Allowed:
    groups = [(_CHANNEL_FINE, _channels_ok), (_AXIS_FINE, _axes_ok)]
    relevant = [[i for i, f in enumerate(part.factors) if any(set(c) & names for alts in f.choices for c in alts)]
                for names, _ in groups]

    free = [_options(f, None) for f in part.factors]
    memos: list[dict[tuple[int | None, ...], bool]] = [{} for _ in groups]

    def judged(group: int, row: Sequence[int | None]) -> bool:
        members, memo = relevant[group], memos[group]
        key = tuple(row[i] for i in members)  # only the positions this rule reads
        if key not in memo:
            options = (free[i] if v is None else part.factors[i].choices[v] for i, v in zip(members, key, strict=True))
            memo[key] = any((fine := _merged(picks)) is not None and groups[group][1](fine)
                            for picks in itertools.product(*options))
        return memo[key]

    def allowed(row: Sequence[int | None]) -> bool:
        return all(judged(group, row) for group in range(len(groups)))

    return allowed


# --- realising rows --------------------------------------------------------------------------------


def _channels(fine: dict[str, Any], rng: random.Random) -> tuple[int, int, int]:
    """(c_in, c_out, groups) for chosen channel classes."""
    grouped = fine["groups"]
    c_in = {"1": 1, "2": 2}.get(fine["c_in"]) or rng.choice(
        BIG_CHANNELS if fine["c_in"] == "big" else ODD_GROUPED_CHANNELS if grouped == "grouped" else ODD_CHANNELS)
    if grouped == "depthwise":
        g = c_in
    elif grouped == "grouped":
        g = rng.choice([d for d in range(2, c_in) if c_in % d == 0 and d <= 8])
    else:
        g = 1
    # big: at least 64 output channels in all and at least 8 per group (so it never reads as 1, 2 or odd)
    per_group = {"1": 1, "2": 2}.get(fine["c_out"]) or (
        max(-(-BIG_CHANNELS[0] // g), 8) if fine["c_out"] == "big" else rng.choice(ODD_CHANNELS))
    return c_in, g * per_group, g


def _pick(fine: dict[str, tuple[Any, ...]], rng: random.Random) -> dict[str, Any] | None:
    """One fine value per factor, consistent (channel rule, realisable axes), drawn from rng; None if none."""
    kinds = [k for k in fine["padding"] if all(_axis_keys(k, tuple(fine[f"{n}_{ax}"] for n in _AXIS_NAMES))
                                               for ax in "hw")]
    pairs = [(c, g) for c in fine["c_in"] for g in fine["groups"] if _channels_ok({"c_in": (c,), "groups": (g,)})]
    if not kinds or not pairs:
        return None
    value = {name: rng.choice(values) for name, values in fine.items()}
    value["padding"] = kind = rng.choice(kinds)
    value["c_in"], value["groups"] = rng.choice(pairs)
    for ax in "hw":
        key = rng.choice(_axis_keys(kind, tuple(fine[f"{n}_{ax}"] for n in _AXIS_NAMES)))
        value.update({f"{n}_{ax}": v for n, v in zip(_AXIS_NAMES, key, strict=True)})
        value[f"geometry_{ax}"] = rng.choice(axis_table()[kind][key])
    return value


def realise(part: Part, row: Sequence[int], rng: random.Random) -> ConvSpec:
    """A concrete ConvSpec of a complete row of a part, every free choice drawn from rng."""
    combos = list(itertools.product(*(part.factors[i].choices[v] for i, v in enumerate(row))))
    for picks in rng.sample(combos, k=len(combos)):  # a seeded order over the levels' alternatives
        fine = _merged(picks)
        value = None if fine is None else _pick(fine, rng)
        if value is not None:
            break
    else:
        raise AssertionError(f"row {row} of part {part.name} has no realisation")
    rows_ax, cols_ax = value["geometry_h"], value["geometry_w"]
    c_in, c_out, groups = _channels(value, rng)
    kind = value["padding"]
    return ConvSpec(
        n={"1": 1, "2": 2}.get(value["n"]) or rng.choice(ODD_BATCH), h=rows_ax[0], w=cols_ax[0],
        c_in=c_in, c_out=c_out, kh=rows_ax[1], kw=cols_ax[1], strides=(rows_ax[2], cols_ax[2]),
        padding=kind if kind != "EXPLICIT" else (rows_ax[4], cols_ax[4]), dilations=(rows_ax[3], cols_ax[3]),
        groups=groups, bias=value["bias"], dtype=value["dtype"], layout=value["layout"],
        activation=value["activation"], seed=rng.randrange(1, 2**31),
    )


def part_rows(part: Part, seed: int, replica: int = 0) -> list[list[int]]:
    """The covering array of one part, seed and replica: level indices, in the part's factor order."""
    rng = random.Random(f"cover-{part.name}-{seed}-{replica}")
    return covering_array([len(f.levels) for f in part.factors], part.sets(), rng, constraint(part))


def part_cases(part: Part, seed: int) -> list[ConvSpec]:
    """The cases of one part: each replica's covering array realised with its own draws."""
    specs = []
    for replica in range(part.replicas):
        rng = random.Random(f"cover-values-{part.name}-{seed}-{replica}")
        specs += [realise(part, row, rng).replace(name=f"cover-{part.name}") for row in part_rows(part, seed, replica)]
    return specs


def cover_cases(count: int | None = None, seed: int = 0) -> list[ConvSpec]:
    """The cover set of a seed (every part, duplicates dropped); `count` truncates it or adds seeds seed+1, ...

    Only the whole set of one seed carries the covering guarantees (docs/cases.md).
    """
    return list(_cover_cases(count, seed))


@cache
def _cover_cases(count: int | None, seed: int) -> tuple[ConvSpec, ...]:
    out: dict[str, ConvSpec] = {}
    extra = 0
    while True:
        for part in PARTS:
            for spec in part_cases(part, seed + extra):
                out.setdefault(spec.id, spec)
        for spec in grad_cover_cases(seed + extra):  # the training ops' own degenerate values, in their op
            out.setdefault(spec.id, spec)
        if count is None or len(out) >= count:
            break
        extra += 1
    specs = tuple(out.values())
    return specs if count is None else specs[:count]
