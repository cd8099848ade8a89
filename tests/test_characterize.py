"""Characterization: the region a failure lives in, as readable `when` conditions with measured fit."""

from __future__ import annotations

import zlib

from refconv.findings import facts as F
from refconv.findings.characterize import as_when, characterize, learn, neighbours
from refconv.spec import ConvSpec

MINIMAL = ConvSpec(n=2, h=1, w=1, c_in=1, c_out=1, kh=1, kw=1, strides=(1, 2), padding="VALID")


def planted(s: ConvSpec) -> bool:
    return s.n >= 2 and s.c_in == 1 and s.strides[1] > s.strides[0] and s.bias


def test_four_way_conjunction_is_recovered_with_its_relation():
    region = characterize(MINIMAL, planted, budget=160, seed=3)
    assert region.conditions == {"bias": True, "c_in": 1, "n": {"min": 2}, "sw_gt_sh": True}
    assert region.precision == 1.0 and region.recall == 1.0
    assert region.probes <= 160 and region.inside >= 10 and region.failing == region.inside


def test_precision_and_recall_are_counted_over_the_probes():
    region = characterize(MINIMAL, planted, budget=160, seed=0)
    inside = [failed for case_id, failed in region.samples
              if F.holds(F.facts_of(ConvSpec.from_id(case_id)), region.conditions)]
    assert region.probes == len(region.samples)
    assert region.inside == len(inside) and region.precision == sum(inside) / len(inside)
    assert region.failing == sum(failed for _, failed in region.samples)


def test_probes_that_say_nothing_are_not_counted():
    # the adapter cannot express channels_last: those probes are neither failing nor passing
    def fails(s: ConvSpec) -> bool | None:
        return None if s.layout == "channels_last" else planted(s)

    region = characterize(MINIMAL, fails, budget=160)
    assert region.skipped >= 1
    assert all("-cl" not in case_id for case_id, _ in region.samples)


def test_the_budget_bounds_the_probes():
    calls = []
    region = characterize(MINIMAL, lambda s: calls.append(s) or planted(s), budget=20)
    assert len(calls) == 20 and region.probes == 20


def test_data_dependent_failure_gets_no_invented_conditions():
    # fails on a third of the single-channel cases, by the case's hash: noise must not become conditions
    def noisy(s: ConvSpec) -> bool:
        return s.c_in == 1 and zlib.crc32(s.id.encode()) % 3 == 0

    spec = next(MINIMAL.replace(seed=seed) for seed in range(100) if noisy(MINIMAL.replace(seed=seed)))
    region = characterize(spec, noisy, budget=160)
    assert region.conditions == {"c_in": 1}
    assert region.recall == 1.0 and region.precision is not None and region.precision < 0.7


def test_neighbours_change_one_field_and_are_valid():
    grouped = ConvSpec(n=1, h=4, w=4, c_in=4, c_out=4, kh=3, kw=3, groups=2)
    probes = list(neighbours(grouped))
    assert grouped not in probes and len({p.id for p in probes}) == len(probes)
    assert all(p.c_in % p.groups == 0 and p.c_out % p.groups == 0 for p in probes)
    assert any(p.groups == p.c_in for p in probes)  # a depthwise neighbour


def test_learner_prefers_the_relation_over_two_ranges():
    anchor = F.facts_of(MINIMAL)
    samples = [(F.facts_of(s), planted(s)) for s in [MINIMAL, *neighbours(MINIMAL)]]
    samples += [(F.facts_of(s), planted(s)) for s in (MINIMAL.replace(strides=(2, 3)), MINIMAL.replace(strides=(3, 3)))]
    when = as_when(learn(anchor, samples))
    assert when["sw_gt_sh"] is True and "sh" not in when and "sw" not in when


def test_as_when_merges_ranges_and_writes_one_value_ranges_as_the_value():
    assert as_when([("n", {"min": 2}), ("n", {"max": 3}), ("c_in", {"max": 1}), ("w", {"min": 4, "max": 4})]) == \
        {"c_in": 1, "n": {"min": 2, "max": 3}, "w": 4}


def test_every_column_a_region_may_use_is_a_valid_known_deviation_key():
    from refconv.deviations import DERIVED
    from refconv.findings.characterize import FEATURES
    from refconv.rows import COLUMNS

    assert set(FEATURES) <= set(COLUMNS) | set(DERIVED)
    # and the relations are computed the same way in both places
    row = F.facts_of(ConvSpec(n=1, h=4, w=4, c_in=2, c_out=2, kh=1, kw=3, strides=(3, 1), groups=2))
    from refconv.deviations import derived

    assert {k: row[k] for k in ("sw_gt_sh", "sh_gt_sw", "stride_gt_kernel", "depthwise")} == \
        {k: derived(row)[k] for k in ("sw_gt_sh", "sh_gt_sw", "stride_gt_kernel", "depthwise")} == \
        {"sw_gt_sh": False, "sh_gt_sw": True, "stride_gt_kernel": True, "depthwise": True}


CPU = "x86-64-v4 avx2 fma avx512f"
CAPPED = {"isa": "onednn:avx2", "cpu_features": CPU}
UNCAPPED = {"isa": "onednn:avx512_core_amx", "cpu_features": CPU}
STRIDED = ConvSpec(n=1, h=1, w=1, c_in=1, c_out=1, kh=1, kw=1, strides=(1, 2), padding="VALID")


def test_a_fleet_probe_gives_one_verdict_per_hardware_kind_and_the_region_names_the_isa():
    # a fleet: the AVX2-capped worker fails on the strided single-channel cases, the other worker never does
    def fails(s: ConvSpec) -> list:
        wrong = s.c_in == 1 and s.strides[1] >= 2 and not F.facts_of(s)["empty_output"]
        return [(CAPPED, wrong), (UNCAPPED, False)]

    region = characterize(STRIDED, fails, budget=160, seed=0)
    assert region.conditions["isa"] == "onednn:avx2" and region.conditions["c_in"] == 1
    assert "cpu_features" not in region.conditions  # the same CPU under both: never a factor
    assert region.precision == 1.0 and region.recall == 1.0
    assert region.probes == len(region.samples) and region.probes % 2 == 0  # two verdicts a probe


def test_hardware_that_does_not_vary_is_never_a_condition():
    # one machine, or a fleet of alike workers: every verdict names the same isa, so none can tell cases apart
    region = characterize(MINIMAL, lambda s: [(UNCAPPED, planted(s))], budget=160, seed=3)
    assert region.conditions == {"bias": True, "c_in": 1, "n": {"min": 2}, "sw_gt_sh": True}
    assert region.precision == 1.0 and region.recall == 1.0


def test_a_kind_that_cannot_run_a_probe_leaves_only_the_other_kinds_verdicts():
    def fails(s: ConvSpec) -> list:
        return [(CAPPED, None if s.dtype == "bfloat16" else planted(s)), (UNCAPPED, False)]

    region = characterize(MINIMAL, fails, budget=160, seed=3)
    assert region.conditions["isa"] == "onednn:avx2"
    bf16 = [failed for case_id, failed in region.samples if case_id.endswith("-bf16")]
    assert bf16 and not any(bf16)  # only the other kind's verdicts (passes) on the cases AVX2 cannot run
