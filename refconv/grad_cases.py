"""The transposed-conv geometry grid (case source `tgrid`): the ambiguity of the output size, per axis.

Several input sizes h give the same forward output size ho (tensorflow#2118), so a transposed conv has
to be told which one it maps back to: TF by `output_shape`, PyTorch and Keras by `output_padding`, ONNX
by pads, output_padding or output_shape, JAX by its padding. Along each axis this grid takes every
(kernel, stride, dilation) of AXES (stride 1..3, stride > kernel, dilation 2 and 3), every padding form
(SAME, VALID, explicit pads with even and odd totals) and, for ho in (2, 3), *every* h that maps to ho
(`refconv.grad_padding.sizes_for`). Row and column configurations are zipped (the column list rotated),
so each axis sees each configuration once; cases are tiny (1 image, 2 -> 2 channels, float32,
every seventh grouped) and check the `transpose` op.

The `cover` source's grad part (`grad_cover_cases`, cases named `cover-grad`, in their own op even in a
forward-only selection) covers the degenerate values of the training ops: an axis where a window reads only
padding (an explicit pad of k_eff or more before, or after the last input pixel: the input gradient's
transposed conv then has a negative pad) and an axis where the forward output is empty.

>>> specs = tgrid_cases()
>>> len(specs) > 150, {s.op for s in specs}
(True, {'transpose'})
>>> sorted({s.op for s in grad_cover_cases(seed=0)})
['grad_filter', 'grad_input', 'transpose']
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from functools import cache
from typing import Any

from refconv.covering import covering_array, interactions
from refconv.grad_padding import sizes_for
from refconv.padding import axis
from refconv.spec import ConvSpec

# (kernel, stride, dilation) per axis: plain strides, stride > kernel, dilated kernels
AXES = [(k, s, 1) for k in (1, 2, 3, 4) for s in (1, 2, 3)] + [(2, 4, 1), (3, 5, 1), (2, 1, 2), (3, 2, 2), (3, 1, 3)]
EXPLICIT = [(1, 1), (0, 1), (1, 0), (2, 1)]  # even and odd totals, the extra pixel before or after
FORWARD_SIZES = (2, 3)


def _axis_cases(padding: Any) -> list[tuple[int, int, int, int, Any]]:
    """(h, k, s, d, pad) along one axis for one padding form: every h of each (k, s, d, ho)."""
    out: list[tuple[int, int, int, int, Any]] = []
    for i, (k, s, d) in enumerate(AXES):
        ho = FORWARD_SIZES[i % len(FORWARD_SIZES)]
        pads: list[Any] = [padding] if padding != "EXPLICIT" else EXPLICIT
        for pad in pads:
            out.extend((h, k, s, d, pad) for h in sizes_for(ho, k, s, d, pad))
    return out


def tgrid_cases(count: int | None = None) -> list[ConvSpec]:
    """The grid's transpose cases (the first `count` when given)."""
    specs: dict[str, ConvSpec] = {}
    for padding in ("SAME", "VALID", "EXPLICIT"):
        rows = _axis_cases(padding)
        cols = rows[len(rows) // 3:] + rows[: len(rows) // 3]
        for j, ((h, kh, sh, dh, ph), (w, kw, sw, dw, pw)) in enumerate(zip(rows, cols, strict=True)):
            spec = ConvSpec(
                n=1, h=h, w=w, c_in=2, c_out=2, kh=kh, kw=kw, strides=(sh, sw), dilations=(dh, dw),
                padding=padding if padding != "EXPLICIT" else (ph, pw), groups=2 if j % 7 == 3 else 1,
                op="transpose", seed=j + 1, name=f"tgrid_{padding.lower()}_{j}",
            )
            specs.setdefault(spec.id, spec)
    out = list(specs.values())
    return out if count is None else out[:count]


# --- the cover source's grad part --------------------------------------------------------------------

GRAD_OPS = ("grad_input", "grad_filter", "transpose")
BEYOND = {"head": ("head",), "tail": ("tail",), "both": ("both",)}  # which end has a window of padding only
# per-case geometry: (rows' state, cols' state); "beyond" takes the side factor's state, "empty" the short one's
GEOMETRIES: dict[str, tuple[str, str]] = {
    "beyond_rows": ("beyond", "in"), "beyond_cols": ("in", "beyond"), "beyond_both": ("beyond", "beyond"),
    "empty_rows": ("empty", "in"), "empty_cols": ("in", "empty"), "empty_both": ("empty", "empty"),
    "empty_rows_beyond_cols": ("empty", "beyond"),
}
GRAD_FACTORS: dict[str, tuple[str, ...]] = {
    "op": GRAD_OPS, "geometry": tuple(GEOMETRIES), "side": tuple(BEYOND),
    # an empty axis short of the kernel by less than its stride (so the stride is 2) or by a stride or more
    "short": ("lt_s", "ge_s"),
    "stride": ("1", "2"),  # of the axes that are not empty by less than a stride
    "padding": ("EXPLICIT", "VALID"), "dtype": ("float32", "float16", "bfloat16", "float64"),
    "layout": ("NHWC", "NCHW"), "c_in": ("1", "2", "odd"),
}
# every (op, geometry) occurs in each dtype, on each side and at each stride: the engine bugs of the training ops
# were dtype-, side- and stride-specific (docs/training.md); still 84 cases per seed
GRAD_TRIPLES = (("op", "geometry", "dtype"), ("op", "geometry", "side"), ("op", "geometry", "stride"))
GRAD_MAX_SIZE, GRAD_MAX_KERNEL, GRAD_MAX_OUT = 6, 4, 4
AxisCase = tuple[int, int, int, int, tuple[int, int]]  # size, k, s, d, (before, after)


def axis_state(size: int, k: int, s: int, d: int, before: int, after: int) -> str:
    """'empty_lt_s' / 'empty_ge_s' (short of k_eff by less than s, or more), 'in', or 'head', 'tail', 'both'.

    'in': every window reads an input pixel; 'head' / 'tail' / 'both': a window reads only padding, before the
    input, after it, or both.

    >>> axis_state(4, 2, 1, 1, 4, 3), axis_state(4, 2, 1, 1, 1, 1), axis_state(2, 3, 1, 1, 0, 0)
    ('both', 'in', 'empty_ge_s')
    """
    g = axis((before, after), size, k, s, d)
    k_eff = (k - 1) * d + 1
    if g.out == 0:
        return "empty_lt_s" if k_eff - size - before - after < s else "empty_ge_s"
    head = before >= k_eff  # the first window ends before the first input pixel
    tail = (g.out - 1) * s >= before + size  # the last window starts after the last input pixel
    return "both" if head and tail else "head" if head else "tail" if tail else "in"


@cache
def grad_axis_table() -> dict[tuple[str, str, int], list[AxisCase]]:
    """(padding kind, state, stride) -> every small axis realisation (sizes up to 6, kernels up to 4, no dilation)."""
    table: dict[tuple[str, str, int], list[AxisCase]] = {}
    for size, k, s in itertools.product(range(1, GRAD_MAX_SIZE + 1), range(1, GRAD_MAX_KERNEL + 1), (1, 2)):
        pads = [("VALID", (0, 0))] + [("EXPLICIT", p) for p in itertools.product(range(k + 3), repeat=2)]
        for kind, (before, after) in pads:
            if axis((before, after), size, k, s).out <= GRAD_MAX_OUT:
                table.setdefault((kind, axis_state(size, k, s, 1, before, after), s), []).append(
                    (size, k, s, 1, (before, after)))
    return table


def _axis_keys(level: dict[str, str], ax: int) -> list[tuple[str, str, int]]:
    """The table keys one axis of a level may take."""
    state, kind, stride = GEOMETRIES[level["geometry"]][ax], level["padding"], int(level["stride"])
    if state == "empty":
        return [(kind, "empty_lt_s", 2)] if level["short"] == "lt_s" else [(kind, "empty_ge_s", stride)]
    states = BEYOND[level["side"]] if state == "beyond" else (state,)
    return [(kind, st, stride) for st in states]


def _grad_allowed(row: Sequence[int | None]) -> bool:
    """VALID pads nothing, so no window of it reads only padding."""
    names = list(GRAD_FACTORS)
    geometry, padding = row[names.index("geometry")], row[names.index("padding")]
    if geometry is None or padding is None:
        return True
    states = GEOMETRIES[GRAD_FACTORS["geometry"][geometry]]
    return not (GRAD_FACTORS["padding"][padding] == "VALID" and "beyond" in states)


def _grad_realise(level: dict[str, str], rng: random.Random) -> ConvSpec:
    table = grad_axis_table()
    (h, kh, sh, _, ph), (w, kw, sw, _, pw) = (
        rng.choice([r for key in _axis_keys(level, ax) for r in table[key]]) for ax in (0, 1))
    c_in = {"1": 1, "2": 2}.get(level["c_in"]) or rng.choice((3, 5))
    return ConvSpec(
        n=rng.choice((1, 2)), h=h, w=w, c_in=c_in, c_out=rng.choice((1, 2, 3)), kh=kh, kw=kw, strides=(sh, sw),
        padding="VALID" if level["padding"] == "VALID" else (ph, pw), bias=False, dtype=level["dtype"],
        layout=level["layout"], op=level["op"], seed=rng.randrange(1, 2**31), name="cover-grad",
    )


def grad_cover_cases(seed: int = 0) -> list[ConvSpec]:
    """The grad part of `cover`: every pair of GRAD_FACTORS' levels and every level triple of GRAD_TRIPLES, seeded."""

    names = list(GRAD_FACTORS)
    sets = set(interactions(names, 2)) | {tuple(sorted(names.index(n) for n in t)) for t in GRAD_TRIPLES}
    rng = random.Random(f"cover-grad-{seed}")
    rows = covering_array([len(GRAD_FACTORS[n]) for n in names], sorted(sets), rng, _grad_allowed)
    specs: dict[str, ConvSpec] = {}
    for row in rows:
        spec = _grad_realise({n: GRAD_FACTORS[n][v] for n, v in zip(names, row, strict=True)}, rng)
        specs.setdefault(spec.id, spec)
    return list(specs.values())
