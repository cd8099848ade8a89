"""The training ops' degenerate values in the default selection: windows that read only padding (an explicit pad
of k_eff or more at one end) and empty forward outputs, from cover's grad part (refconv.grad_cases)."""

from __future__ import annotations

from collections import Counter

import pytest

from refconv import cases, deviations, grad_cases
from refconv.padding import geometry
from refconv.rows import case_columns
from refconv.spec import OPS, ConvSpec

GRAD_OPS = ("grad_input", "grad_filter", "transpose")


def ends_of_padding_only(spec: ConvSpec) -> list[set[str]]:
    """Per axis, which ends have a window of padding only, worked out here from the case's numbers."""
    out = []
    for size, k, s, d, g in ((spec.h, spec.kh, spec.strides[0], spec.dilations[0], geometry(spec)[0]),
                             (spec.w, spec.kw, spec.strides[1], spec.dilations[1], geometry(spec)[1])):
        k_eff = (k - 1) * d + 1
        ends = set()
        if g.out and g.before >= k_eff:  # window 0 spans padded pixels [0, k_eff), all before the input
            ends.add("head")
        if g.out and (g.out - 1) * s >= g.before + size:  # the last window starts past the last input pixel
            ends.add("tail")
        out.append(ends)
    return out


def empty(spec: ConvSpec) -> bool:
    return 0 in (geometry(spec)[0].out, geometry(spec)[1].out)


@pytest.fixture(scope="module")
def default_grad_cases() -> list[ConvSpec]:
    return [s for s in cases.select(cases.DEFAULT_SELECTION, ops=OPS) if s.op != "conv2d"]


def test_axis_state_on_hand_checked_axes() -> None:
    # a 4-pixel axis, 2-tap kernel, pads 4 and 3: windows 0-2 read only the 4 pads before, 7-8 only the 3 after
    assert grad_cases.axis_state(4, 2, 1, 1, 4, 3) == "both"
    assert grad_cases.axis_state(4, 2, 1, 1, 2, 0) == "head"  # window 0 = pads 0-1
    assert grad_cases.axis_state(4, 2, 1, 1, 1, 1) == "in"  # every window holds an input pixel
    assert grad_cases.axis_state(3, 1, 2, 1, 0, 2) == "tail"  # 1-tap, stride 2 over 5 pixels: window 2 = pad
    assert grad_cases.axis_state(2, 3, 1, 1, 0, 0) == "empty_ge_s"  # short by 1, stride 1
    assert grad_cases.axis_state(2, 3, 2, 1, 0, 0) == "empty_lt_s"  # short by 1, stride 2
    assert grad_cases.axis_state(2, 3, 1, 2, 1, 1) == "empty_ge_s"  # k_eff 5 > 2 + 2


@pytest.mark.parametrize("op", GRAD_OPS)
def test_default_selection_reaches_padding_only_windows_and_empty_outputs(op: str,
                                                                          default_grad_cases: list[ConvSpec]) -> None:
    mine = [s for s in default_grad_cases if s.op == op]
    ends = [ends_of_padding_only(s) for s in mine]
    assert any(e[0] == {"head"} for e in ends) and any(e[1] == {"head"} for e in ends)
    assert any(e[0] == {"tail"} for e in ends) and any(e[1] == {"tail"} for e in ends)
    assert any(e[0] and e[1] for e in ends)  # both axes at once
    assert any(empty(s) and s.padding == "VALID" for s in mine)
    assert any(empty(s) and s.padding_kind == "EXPLICIT" for s in mine)
    dtypes = {s.dtype for s, e in zip(mine, ends, strict=True) if e[0] and e[1]}
    assert dtypes == {"float32", "float16", "bfloat16", "float64"}  # each op x geometry x dtype is covered


def test_the_grad_part_adds_tens_of_cases(default_grad_cases: list[ConvSpec]) -> None:
    added = Counter(s.op for s in default_grad_cases if s.name == "cover-grad")
    assert set(added) == set(GRAD_OPS)
    assert sum(added.values()) <= 90


def test_forward_only_selections_keep_the_grad_part_in_its_own_ops() -> None:
    assert {s.op for s in cases.select("cover", ops=("conv2d",))} == {"conv2d"}
    kept = cases.select("cover", ops=("conv2d", "grad_input"))
    assert {s.op for s in kept if s.name == "cover-grad"} == {"grad_input"}
    assert {s.op for s in kept if s.name != "cover-grad"} == {"conv2d"}
    assert {s.op for s in cases.select("cover@all")} == set(OPS)  # its own @ops expands every case


def test_grad_part_is_seeded_and_round_trips() -> None:
    first = grad_cases.grad_cover_cases(seed=0)
    assert [s.id for s in first] == [s.id for s in grad_cases.grad_cover_cases(seed=0)]
    assert [s.id for s in first] != [s.id for s in grad_cases.grad_cover_cases(seed=1)]
    for spec in first:
        assert ConvSpec.from_id(spec.id).replace(name=spec.name) == spec
        assert not spec.bias and spec.activation is None


def jax_negative_pad_region(spec: ConvSpec) -> bool:
    """jax.vjp's transposed conv gets pads (p, q) with p < 0 < q <= -p on an axis, strides and dilations 1."""
    if spec.op == "grad_filter" or spec.strides != (1, 1) or spec.dilations != (1, 1) or empty(spec):
        return False
    hit = False
    for size, k, g in ((spec.h, spec.kh, geometry(spec)[0]), (spec.w, spec.kw, geometry(spec)[1])):
        rem = size + g.before + g.after - k - (g.out - 1)  # what stride 1 skipped: nothing
        p, q = k - 1 - g.before, rem - g.after + k - 1
        hit = hit or p < 0 < q <= -p
    return hit


@pytest.mark.parametrize("seed", range(6))
def test_every_seed_reaches_the_regions_where_engines_failed(seed: int) -> None:
    """docs/training.md: tf's filter-gradient crash and jax's negative-pad reads, from the default's cover part."""
    specs = cases.select("cover", seed=seed, ops=OPS)
    (crash,) = [d for d in deviations.load() if d.id == "tf_grad_filter_explicit_empty_output_crash"]
    assert any(crash.applies_case(case_columns(s)) for s in specs)
    assert any(jax_negative_pad_region(s) and s.dtype != "float64" for s in specs)


# empty forward outputs at stride 2: lax.conv_transpose sizes a 0-pixel y as k_eff - 1, not k_eff - s
EMPTY_TRANSPOSES = ["n2-6x2x3-k4x3x2-s1x2-p0_4x0_0-f32-r457527898-transpose",
                    "n1-1x3x3-k4x4x1-s1x2-p2_0x3_0-f32-d1x2-r1800869855-transpose",
                    "n2-1x2x2-k4x4x2-s2x1-p1_1x0_5-f32-r65941989-transpose"]


@pytest.mark.parametrize("case_id", EMPTY_TRANSPOSES)
def test_jax_transposes_an_empty_forward_output_to_the_input_size(case_id: str) -> None:
    from refconv.conformance.check import check
    from refconv.conformance.plugin import adapter_or_skip

    result = check("jax", adapter_or_skip("jax"), ConvSpec.from_id(case_id))
    assert result.action == "pass", result.message
