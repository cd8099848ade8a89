"""Case sources: the edge corpus (a data file), the seeded random sweep, and selection strings.

>>> [s.id for s in select("edge")][:1]
['n1-5x5x3-k1x1x4-s1x1-same-f32']
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

from refconv.spec import OPS, ConvSpec, SpecError

DEFAULT_SELECTION = "edge,cover,random:200,special:24"

# Weights of the random sweep's mix: each dimension appears in a 200-case run.
DTYPE_WEIGHTS = {"float32": 0.55, "float64": 0.15, "float16": 0.15, "bfloat16": 0.15}
LAYOUT_WEIGHTS = {"NHWC": 0.7, "NCHW": 0.2, "channels_last": 0.1}
P_DILATION, P_GROUPS, P_EXPLICIT, P_VALID, P_RELU, P_NO_BIAS = 0.25, 0.25, 0.2, 0.3, 0.2, 0.15
MAX_SIDE, MAX_KERNEL, MAX_STRIDE, MAX_DILATION, MAX_BATCH = 16, 5, 4, 3, 3
CHANNELS = (1, 2, 3, 4, 8, 16, 32)


def edge_cases() -> list[ConvSpec]:
    """The hand-picked corpus in refconv/data/edge_cases.toml, each named for what it pins down."""
    text = resources.files("refconv.data").joinpath("edge_cases.toml").read_text()
    specs = []
    for name, fields in tomllib.loads(text).items():
        fields = dict(fields)
        for key in ("strides", "dilations"):
            if key in fields:
                fields[key] = tuple(fields[key])
        if isinstance(fields.get("padding"), list):
            fields["padding"] = tuple(tuple(p) for p in fields["padding"])
        try:
            specs.append(ConvSpec(name=name, **fields))
        except (TypeError, SpecError) as exc:
            raise SpecError(f"edge case {name!r}: {exc}") from None
    return specs


def _weighted(rng: random.Random, weights: dict[Any, float]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def random_case(rng: random.Random) -> ConvSpec:
    """One draw of the random sweep; every field is drawn from rng alone, so the sweep is reproducible."""
    c_in = rng.choice(CHANNELS)
    groups = 1
    if rng.random() < P_GROUPS and c_in > 1:
        groups = c_in if rng.random() < 0.5 else rng.choice([g for g in (2, 4) if c_in % g == 0] or [c_in])
    if groups == c_in and groups > 1:  # depthwise, channel multiplier 1 or 2
        c_out = groups * rng.choice((1, 2))
    else:
        c_out = groups * rng.randint(1, max(1, 16 // groups))
    kh, kw = rng.randint(1, MAX_KERNEL), rng.randint(1, MAX_KERNEL)
    if rng.random() < 0.6:
        kw = kh
    dilations = (1, 1)
    if rng.random() < P_DILATION:
        dilations = (rng.randint(1, MAX_DILATION), rng.randint(1, MAX_DILATION))
    padding: Any = "SAME"
    roll = rng.random()
    if roll < P_EXPLICIT:
        padding = tuple((rng.randint(0, kh + 1), rng.randint(0, kh + 1)) for kh in (kh, kw))
    elif roll < P_EXPLICIT + P_VALID:
        padding = "VALID"
    side = rng.randint(1, MAX_SIDE)
    return ConvSpec(
        n=rng.randint(1, MAX_BATCH), h=side, w=side if rng.random() < 0.5 else rng.randint(1, MAX_SIDE),
        c_in=c_in, c_out=c_out, kh=kh, kw=kw,
        strides=(rng.randint(1, MAX_STRIDE), rng.randint(1, MAX_STRIDE)) if rng.random() < 0.6 else (1, 1),
        padding=padding, dilations=dilations, groups=groups,
        bias=rng.random() >= P_NO_BIAS, dtype=_weighted(rng, DTYPE_WEIGHTS),
        layout=_weighted(rng, LAYOUT_WEIGHTS), activation="relu" if rng.random() < P_RELU else None,
        seed=rng.randrange(1, 2**31),
    )


def random_cases(count: int, seed: int = 0) -> list[ConvSpec]:
    """`count` cases of the seeded random sweep; the same (count, seed) gives the same list."""
    rng = random.Random(seed)
    return [random_case(rng) for _ in range(count)]


def _source(name: str) -> Callable[[int | None, int], list[ConvSpec]]:
    sources: dict[str, Callable[[int | None, int], list[ConvSpec]]] = {
        "edge": lambda count, seed: edge_cases(),
        "random": lambda count, seed: random_cases(200 if count is None else count, seed),
        "grid": lambda count, seed: _grid(count),
        "cover": lambda count, seed: _cover(count, seed),
        "special": lambda count, seed: _special(count, seed),
        "tgrid": lambda count, seed: _tgrid(count),
    }
    for extra_name, factory in EXTRA_SOURCES.items():
        sources.setdefault(extra_name, factory)
    if name not in sources:
        raise SpecError(f"unknown case source {name!r}; available: {', '.join(sorted(sources))}")
    return sources[name]


def _grid(count: int | None) -> list[ConvSpec]:
    from refconv.grid import grid_cases  # lazy: the grid is built only when selected

    return grid_cases(count)


def _cover(count: int | None, seed: int) -> list[ConvSpec]:
    from refconv.cover import cover_cases  # lazy: the covering arrays are built only when selected

    return cover_cases(count, seed)


def _special(count: int | None, seed: int) -> list[ConvSpec]:
    from refconv.special import special_cases  # NaN, Inf, signed zeros, subnormals, near-overflow values

    return special_cases(count, seed)


def _tgrid(count: int | None) -> list[ConvSpec]:
    from refconv.grad_cases import tgrid_cases  # lazy: the transposed-conv grid is built only when selected

    return tgrid_cases(count)


# Later case sources (the exhaustive grid, ...) register here: name -> f(count or None, seed).
EXTRA_SOURCES: dict[str, Callable[[int | None, int], list[ConvSpec]]] = {}


# Sources whose cases stay forward-only when ops are expanded (a part's own '@ops' suffix overrides): the
# random sweep and the exhaustive grid are the bulk of a run, so the training ops ride on the edge corpus
# (and on tgrid, whose cases are transposes).
# cover is forward-only too: its ~200 cases in every op would break the default run's 2x wall-time budget
# (docs/cases.md); `cover@all` asks for them. Its grad part (refconv.grad_cases) is made in the training ops.
FORWARD_ONLY_SOURCES = ("random", "grid", "special", "cover")


def select(selection: str = DEFAULT_SELECTION, seed: int = 0, ops: tuple[str, ...] | None = None) -> list[ConvSpec]:
    """Cases named by a selection string: 'edge,random:200', or case ids, comma-separated; duplicates dropped.

    A part may end in '@op+op' ('edge@grad_input+transpose', 'random:20@all'): its cases in those ops
    (`with_ops`). `ops` expands every other source part the same way, except FORWARD_ONLY_SOURCES, which
    stay conv2d when conv2d is among `ops` (a case such a source makes in a selected training op keeps it).
    Case ids keep the op they name.
    """
    out: dict[str, ConvSpec] = {}
    for part in _parts(selection):
        part, _, own = part.partition("@")
        specs = _expand(part, seed)
        part_ops = parse_ops(own) if own else ops
        if not own and part_ops and part.partition(":")[0] in FORWARD_ONLY_SOURCES and "conv2d" in part_ops:
            # not expanded; a case the source made in a selected training op keeps it (cover's grad part)
            specs, part_ops = [s for s in specs if s.op in part_ops], None
        if part_ops and not (part.startswith("n") and part[1:2].isdigit()):
            specs = with_ops(specs, part_ops)
        for spec in specs:
            out.setdefault(spec.id, spec)
    return list(out.values())


def parse_ops(text: str) -> tuple[str, ...]:
    """'conv2d,grad_input' or 'grad_input+transpose' or 'all' as a tuple of ops; an unknown op raises SpecError."""
    names = [t.strip() for t in text.replace("+", ",").split(",") if t.strip()]
    if names == ["all"]:
        return OPS
    unknown = [n for n in names if n not in OPS]
    if unknown or not names:
        raise SpecError(f"unknown op {', '.join(unknown) or repr(text)}; available: {', '.join(OPS)}, all")
    return tuple(dict.fromkeys(names))


def with_ops(specs: list[ConvSpec], ops: tuple[str, ...]) -> list[ConvSpec]:
    """Every case in each op: the training ops' twins check the convolution alone (no activation, no bias)."""
    out: dict[str, ConvSpec] = {}
    for spec in specs:
        for op in ops:
            twin = spec if op == spec.op else spec.replace(op=op, activation=None if op != "conv2d" else
                                                           spec.activation)
            out.setdefault(twin.id, twin)
    return list(out.values())


def with_dtype(specs: list[ConvSpec], dtype: str) -> list[ConvSpec]:
    """The same cases in one dtype (ids change with it; duplicates dropped); an unknown dtype raises SpecError."""
    out: dict[str, ConvSpec] = {}
    for spec in specs:
        twin = spec.replace(dtype=dtype)
        out.setdefault(twin.id, twin)
    return list(out.values())


def _parts(selection: str) -> Iterator[str]:
    parts = [p.strip() for p in selection.split(",") if p.strip()]
    if not parts:
        raise SpecError(f"case selection is empty, got {selection!r}")
    yield from parts


def _expand(part: str, seed: int) -> list[ConvSpec]:
    if part.startswith("n") and part[1:2].isdigit():
        return [ConvSpec.from_id(part)]
    name, _, count_text = part.partition(":")
    count = None
    if count_text:
        if not count_text.isdigit() or int(count_text) <= 0:
            raise SpecError(f"case count must be a positive integer, got {part!r}")
        count = int(count_text)
    return _source(name)(count, seed)
