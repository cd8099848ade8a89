"""The cover case source: covering guarantees checked from the concrete cases, determinism, seeds, ids."""

from __future__ import annotations

import itertools
from functools import cache

import pytest

from refconv import cases, cover
from refconv.padding import geometry
from refconv.spec import ConvSpec

SEEDS = (0, 1, 2, 3, 4)


@cache
def cover_set(seed: int) -> tuple[ConvSpec, ...]:
    return tuple(cover.cover_cases(seed=seed))


def part_set(part: str, seed: int) -> tuple[ConvSpec, ...]:
    return tuple(s for s in cover_set(seed) if s.name == f"cover-{part}")


# --- the classes of a concrete case, computed here from the definitions in docs/cases.md ---------------


def axis_classes(size: int, k: int, s: int, d: int, out: int, before: int, after: int) -> dict[str, str]:
    k_eff = (k - 1) * d + 1
    total = before + after
    if k_eff == 1:
        kernel = "1"
    elif k_eff > size:
        kernel = "gt_in"
    else:
        kernel = {-1: "lt_s", 0: "eq_s", 1: "gt_s"}[(k_eff > s) - (k_eff < s)]
    return {
        "out": "empty" if out == 0 else str(out) if out <= 3 else "4+",
        "pad": "0" if total == 0 else "even" if total % 2 == 0 else "odd_after" if after > before else "odd_before",
        "s": str(s), "d": "1" if d == 1 else "2+", "k": kernel,
    }


def classes(spec: ConvSpec) -> dict[str, str]:
    rows, cols = geometry(spec)
    out = {}
    for ax, size, k, s, d, g in (("h", spec.h, spec.kh, spec.strides[0], spec.dilations[0], rows),
                                 ("w", spec.w, spec.kw, spec.strides[1], spec.dilations[1], cols)):
        out |= {f"{name}_{ax}": v for name, v in axis_classes(size, k, s, d, g.out, g.before, g.after).items()}
    per_group = spec.c_out // spec.groups
    out |= {
        "padding": spec.padding_kind,
        "n": {1: "1", 2: "2"}.get(spec.n, "odd" if spec.n % 2 else "other"),
        "c_in": {1: "1", 2: "2"}.get(spec.c_in, "big" if spec.c_in >= 64 else "odd" if spec.c_in % 2 else "other"),
        "c_out": {1: "1", 2: "2"}.get(per_group, "big" if per_group >= 8 and spec.c_out >= 64
                                      else "odd" if per_group % 2 else "other"),
        "groups": "1" if spec.groups == 1 else "depthwise" if spec.groups == spec.c_in else "grouped",
        "dtype": spec.dtype, "layout": spec.layout, "bias": str(spec.bias), "activation": str(spec.activation),
    }
    return out


def impossible(a: str, va: str, b: str, vb: str) -> bool:
    """Pairs no valid case can hold (or that the classes exclude by design), each for a stated reason."""
    pair = {a: va, b: vb}
    for ax in "hw":
        out, pad, s, d, k = (pair.get(f"{n}_{ax}") for n in ("out", "pad", "s", "d", "k"))
        kind = pair.get("padding")
        if out == "empty" and (k not in (None, "gt_in") or kind == "SAME"):
            return True  # an empty axis needs a kernel longer than the input; SAME never empties
        if kind == "VALID" and pad not in (None, "0") or kind == "SAME" and pad == "odd_before":
            return True  # VALID pads nothing; SAME puts an odd pixel after
        if k in ("lt_s", "eq_s") and s is not None and int(s) <= {"lt_s": 2, "eq_s": 1}[k]:
            return True  # 1 < k_eff < s needs s >= 3; k_eff == s > 1 needs s >= 2
        if d == "2+" and k == "1":
            return True  # by design: dilating a one-tap kernel is no dilation
    c_in, groups = pair.get("c_in"), pair.get("groups")
    return (c_in == "1" and groups in ("grouped", "depthwise")) or (c_in == "2" and groups == "grouped")


# --- tests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_breadth_covers_every_possible_pair_of_levels(seed):
    seen = [classes(s) for s in part_set("breadth", seed)]
    names = list(cover.FINE)
    assert set(seen[0]) == set(names)
    missing = []
    for a, b in itertools.combinations(names, 2):
        pairs = {(c[a], c[b]) for c in seen}
        for va, vb in itertools.product((str(v) for v in cover.FINE[a]), (str(v) for v in cover.FINE[b])):
            if (va, vb) not in pairs and not impossible(a, va, b, vb):
                missing.append((a, va, b, vb))
            if (va, vb) in pairs:
                assert not impossible(a, va, b, vb), (a, va, b, vb)  # the stated reasons are right
    assert not missing


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_degenerate_part_has_every_joint_conjunction_in_each_replica(seed):
    specs = part_set("degenerate", seed)
    counts: dict[tuple[str, str, str], int] = {}
    for spec in specs:
        c = classes(spec)
        batch = f"n{'1' if spec.n == 1 else 'N'}_c{'1' if spec.c_in == 1 else 'N'}"
        sh, sw = spec.strides
        stride = "equal" if sh == sw else "row_1_lt_col" if sh == 1 else "col_1_lt_row" if sw == 1 else "other"
        one = (c["out_h"] == "1", c["out_w"] == "1")
        output = {(False, False): "full", (True, False): "one_row", (False, True): "one_col",
                  (True, True): "one_pixel"}[one]
        key = (batch, stride, output)
        counts[key] = counts.get(key, 0) + 1
        # the default configuration
        assert spec.dtype == "float32" and spec.layout in ("NHWC", "NCHW") and spec.groups == 1, spec.id
        assert spec.dilations == (1, 1) and "empty" not in (c["out_h"], c["out_w"]), spec.id
    wanted = itertools.product(("n1_c1", "n1_cN", "nN_c1", "nN_cN"), ("equal", "row_1_lt_col", "col_1_lt_row"),
                               ("full", "one_row", "one_col", "one_pixel"))
    assert {k: counts.get(k, 0) for k in wanted if counts.get(k, 0) < cover.REPLICAS} == {}
    assert set(counts) <= set(itertools.product(*(sorted({k[i] for k in counts}) for i in range(3))))


def test_same_seed_same_cases_other_seeds_other_cases():
    again = cover.part_cases(cover.BREADTH, 0)  # built afresh, not from a cache
    assert [s.id for s in again] == [s.id for s in part_set("breadth", 0)]
    # whole sets for three seeds, the breadth part for two more: five seeds, five different sets
    sets = [frozenset(s.id for s in cover_set(seed)) for seed in SEEDS[:3]]
    sets += [frozenset(s.id for s in cover.part_cases(cover.BREADTH, seed)) for seed in SEEDS[3:]]
    for a, b in itertools.combinations(sets, 2):
        assert len(a & b) < len(b) // 10  # concrete values differ, not only the order


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_every_case_is_valid_and_its_id_round_trips(seed):
    specs = cover_set(seed)
    assert 120 <= sum(s.op == "conv2d" for s in specs) <= 260  # the grad part's cases: tests/test_grad_regions.py
    assert len({s.id for s in specs}) == len(specs)
    for spec in specs:
        assert ConvSpec.from_id(spec.id) == spec
        assert spec.name.startswith("cover-")
        rows, cols = geometry(spec)
        assert spec.h <= cover.MAX_SIZE and spec.w <= cover.MAX_SIZE and rows.out <= cover.MAX_OUT >= cols.out


def test_realised_classes_match_the_abstract_rows():
    part = cover.BREADTH
    rows = cover.part_rows(part, 0)
    specs = part_set("breadth", 0)
    assert len(rows) == len(specs)
    for row, spec in zip(rows, specs, strict=True):
        got = classes(spec)
        for factor, level in zip(part.factors, row, strict=True):
            assert got[factor.name] == factor.levels[level], (spec.id, factor.name)


def test_selection_grammar_and_counts():
    assert "cover" in cases.DEFAULT_SELECTION.split(",")
    assert [s.id for s in cases.select("cover", seed=1)] == [s.id for s in cover_set(1)]
    assert [s.id for s in cover.cover_cases(10, seed=1)] == [s.id for s in cover_set(1)][:10]
    more = cover.cover_cases(len(cover_set(1)) + 5, seed=1)
    assert len(more) == len(cover_set(1)) + 5 and more[:len(cover_set(1))] == list(cover_set(1))


def test_covering_array_is_a_covering_array_on_a_small_example():
    import random

    levels = [3, 2, 4, 2]
    sets = cover.interactions(["a", "b", "c", "d"], 2, ("a", "c", "d"), 3)
    rows = cover.covering_array(levels, sets, random.Random(0), lambda row: not (row[0] == 0 and row[1] == 1))
    for s in sets:
        got = {tuple(r[i] for i in s) for r in rows}
        every = itertools.product(*(range(levels[i]) for i in s))
        want = {v for v in every if not (s[:2] == (0, 1) and v[:2] == (0, 1))}
        assert want <= got, s
    assert all(not (r[0] == 0 and r[1] == 1) for r in rows)
    assert len(rows) < 3 * 4 * 2 + 6  # near the 24 that strength 3 over (a, c, d) needs
