"""Shrinking: a failing case reduced to a minimal one that still fails, always valid, within the budget."""

from __future__ import annotations

from refconv.findings.shrink import cost, shrink
from refconv.spec import ConvSpec

BIG = ConvSpec(n=3, h=9, w=7, c_in=6, c_out=6, kh=3, kw=3, strides=(2, 3), padding=((1, 2), (0, 1)),
               dilations=(2, 1), groups=3, dtype="float16", layout="NCHW", activation="relu", seed=77)


def test_bug_needing_nothing_shrinks_to_the_simplest_case_in_one_call():
    calls = []
    minimal = shrink(BIG, lambda s: calls.append(s) or True)
    assert minimal.id == "n1-1x1x1-k1x1x1-s1x1-valid-f32-nobias"
    assert len(calls) == 1


def test_conjunction_keeps_exactly_what_it_needs():
    def planted(s: ConvSpec) -> bool:  # batch >= 2, one input channel, sw > sh, a bias
        return s.n >= 2 and s.c_in == 1 and s.strides[1] > s.strides[0] and s.bias

    start = BIG.replace(groups=1, c_in=1, bias=True)
    minimal = shrink(start, planted)
    assert minimal.id == "n2-1x1x1-k1x1x1-s1x2-valid-f32"


def test_thresholds_are_found_not_just_ones():
    # fails only with h >= 5 and kw >= 3 (e.g. a blocked kernel path): binary search lands on the edges
    minimal = shrink(BIG.replace(groups=1), lambda s: s.h >= 5 and s.kw >= 3 and s.w >= s.kw)
    assert (minimal.h, minimal.kw, minimal.w) == (5, 3, 3)
    assert (minimal.n, minimal.c_in, minimal.c_out, minimal.kh) == (1, 1, 1, 1)


def test_grouped_cases_stay_valid_and_depthwise_stays_depthwise():
    seen = []

    def depthwise(s: ConvSpec) -> bool:
        seen.append(s)  # every candidate was constructed, so it is a valid ConvSpec
        return s.groups > 1 and s.groups == s.c_in

    minimal = shrink(BIG.replace(c_in=6, c_out=12, groups=6), depthwise)
    assert minimal.groups == minimal.c_in == 2 and minimal.c_out == 2
    assert all(s.c_in % s.groups == 0 and s.c_out % s.groups == 0 for s in seen)


def test_flags_and_kinds_simplify_only_when_the_failure_allows():
    # needs float64 and explicit padding on the left: dtype goes to float64, not float32; pads shrink to one
    def needs(s: ConvSpec) -> bool:
        return s.dtype == "float64" and not isinstance(s.padding, str) and s.padding[1][0] >= 1

    minimal = shrink(BIG.replace(dtype="float64", padding=((2, 2), (3, 1))), needs)
    assert minimal.dtype == "float64" and minimal.padding == ((0, 0), (1, 0))
    assert minimal.layout == "NHWC" and minimal.activation is None and not minimal.bias


def test_every_accepted_step_is_simpler_and_the_budget_is_respected():
    calls = []

    def flaky(s: ConvSpec) -> bool:
        calls.append(s)
        return s.n + s.h + s.w > 12  # many small steps

    minimal = shrink(BIG, flaky, budget=10)
    assert len(calls) == 10
    assert cost(minimal) < cost(BIG) and flaky(minimal)


def test_a_case_that_stops_failing_everywhere_is_returned_unchanged():
    assert shrink(BIG, lambda s: s == BIG) == BIG
