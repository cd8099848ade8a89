"""Grouping: failing rows become distinct problems, each once, with every engine's outcome on its minimal case."""

from __future__ import annotations

import json

from refconv.findings.group import family, group_rows, merge
from refconv.findings.problem import Problem, dump, load
from refconv.rows import case_columns
from refconv.spec import ConvSpec


def row(case_id: str, adapter: str, outcome: str, known: str = "", **extra: object) -> dict:
    spec = ConvSpec.from_id(case_id)
    return {**case_columns(spec), "adapter": adapter, "outcome": outcome, "known_deviation": known,
            "repro": f"repro/{case_id}__{adapter}.py" if outcome != "pass" else "", **extra}


SMALL, BIG = "n2-2x1x1-k1x1x1-s1x2-valid-f32", "n3-9x9x1-k3x3x4-s1x3-same-f32"


def test_one_problem_per_cause_with_the_smallest_case_and_engines_side_by_side():
    rows = [
        row(BIG, "tf", "mismatch"), row(BIG, "torch", "pass"),
        row(SMALL, "tf", "mismatch"), row(SMALL, "tf:onednn=off", "pass"), row(SMALL, "torch", "pass"),
        row("n1-2x2x2-k3x3x2-s1x1-valid-f32", "torch", "raised", "torch_empty_output_raises"),
        row("n1-1x2x2-k3x3x2-s1x1-valid-f32", "keras", "raised", "torch_empty_output_raises"),
        row("n1-4x4x4-k1x1x4-s1x1-same-f32", "torch", "pass"),
    ]
    problems = group_rows(rows)
    assert [p.known_deviation for p in problems] == [None, "torch_empty_output_raises"]  # NEW first
    new, known = problems
    assert new.minimal_case == SMALL and new.cases == [SMALL, BIG] and new.rows == 2
    assert new.adapters == ["tf"] and new.outcome == "mismatch"
    assert new.engines == {"tf": "mismatch", "tf:onednn=off": "pass", "torch": "pass"}
    assert new.repro == f"repro/{SMALL}__tf.py"
    assert new.conditions["c_in"] == 1 and new.conditions["n"] == {"min": 2} and new.conditions["sw_gt_sh"] is True
    assert new.precision is None and new.probes == 0  # a signature, not a measured region
    assert known.id == "torch_empty_output_raises" and known.adapters == ["keras", "torch"] and known.rows == 2
    assert known.minimal_case == "n1-1x2x2-k3x3x2-s1x1-valid-f32"  # fewer elements


def test_different_outcomes_adapter_families_and_signatures_stay_apart():
    rows = [row(SMALL, "tf", "mismatch"), row(SMALL, "tf", "raised"), row(SMALL, "torch", "mismatch"),
            row("n1-4x4x4-k2x2x4-s1x1-same-f32", "tf", "mismatch"), row(SMALL, "tf:onednn=on", "mismatch")]
    problems = group_rows(rows)
    assert len(problems) == 4
    assert len({p.id for p in problems}) == 4
    (both,) = [p for p in problems if len(p.adapters) == 2]
    assert both.adapters == ["tf", "tf:onednn=on"]  # one family: variants of one adapter meet


def test_broken_relations_group_by_relation():
    rows = [row(SMALL, "tf", "broken", relation="batch_split"), row(BIG, "tf", "broken", relation="batch_split"),
            row(SMALL, "tf", "broken", relation="linearity")]
    ids = sorted(p.conditions["relation"] for p in group_rows(rows))
    assert ids == ["batch_split", "linearity"]


def test_family_strips_options_only():
    assert family("tf:onednn=on") == "tf"
    assert family("pkg.mod:Class:mode=wrong") == "pkg.mod:Class"


def problem(pid: str, adapters: list[str], engines: dict[str, str], conditions: dict, known: str | None = None,
            probes: int = 50) -> Problem:
    return Problem(id=pid, adapters=adapters, outcome="mismatch", minimal_case=SMALL, cases=[SMALL], probes=probes,
                   conditions=conditions, known_deviation=known, engines=engines, precision=1.0, recall=1.0, rows=1)


def test_merge_needs_one_characterization_and_agreeing_engines():
    when = {"c_in": 1, "n": {"min": 2}}
    a = problem("a", ["tf"], {"tf": "mismatch", "keras": "mismatch"}, when)
    b = problem("b", ["keras"], {"tf": "mismatch", "keras": "mismatch"}, when)
    c = problem("c", ["torch"], {"tf": "mismatch", "torch": "mismatch"}, {"c_in": 1})
    d = problem("d", ["jax"], {"jax": "mismatch", "tf": "pass"}, when)  # same region, but tf passes its case
    merged = merge([a, b, c, d])
    assert [p.id for p in merged] == ["a", "c", "d"]
    assert merged[0].adapters == ["keras", "tf"] and merged[0].rows == 2 and merged[0].probes == 50


def test_merge_by_known_deviation():
    a = problem("x", ["torch"], {}, {"c_in": 1}, known="dev")
    b = problem("y", ["torch-nn"], {}, {"n": 2}, known="dev")
    assert [p.adapters for p in merge([a, b])] == [["torch", "torch-nn"]]


def test_problem_round_trips_through_json():
    p = problem("a", ["tf"], {"tf": "mismatch"}, {"dtype": ["float32", "bfloat16"], "n": {"min": 2}})
    text = json.dumps(dump([p]))
    assert load(json.loads(text)) == [p]
    assert set(json.loads(text)[0]) == {
        "id", "adapters", "outcome", "minimal_case", "cases", "conditions", "precision", "recall", "probes",
        "known_deviation", "engines", "repro", "upstream_report", "title", "present_since", "rows"}


def test_a_bigger_case_joins_the_group_whose_facts_it_has():
    # BIG lacks SMALL's 1x1 kernel and single output channel but has its batch, channel and stride facts
    plain = "n1-6x6x4-k3x3x4-s1x1-same-f32"  # no degenerate fact: a group of its own that takes no others
    problems = group_rows([row(SMALL, "tf", "mismatch"), row(BIG, "tf", "mismatch"), row(plain, "tf", "mismatch")])
    assert len(problems) == 2
    grouped = next(p for p in problems if p.rows == 2)
    assert grouped.minimal_case == SMALL and grouped.conditions == {"n": {"min": 2}, "c_in": 1, "sw_gt_sh": True}


def test_a_broken_relation_on_a_case_that_already_fails_folds_into_the_case_problem():
    case = problem("case", ["tf"], {"tf": "mismatch"}, {"c_in": 1, "n": {"min": 2}})
    inside = Problem(id="rel", adapters=["tf:onednn=on"], outcome="broken", minimal_case=BIG, cases=[BIG], probes=30,
                     conditions={"relation": "batch_split", "c_in": 1}, engines={"tf": "broken"}, rows=2)
    elsewhere = Problem(id="rel2", adapters=["tf"], outcome="broken", minimal_case="n1-4x4x2-k3x3x2-s1x1-same-f32",
                        cases=["n1-4x4x2-k3x3x2-s1x1-same-f32"], probes=30, conditions={"relation": "linearity"},
                        engines={"tf": "broken"}, rows=1)
    other_engine = Problem(id="rel3", adapters=["torch"], outcome="broken", minimal_case=SMALL, cases=[SMALL],
                           probes=30, conditions={"relation": "batch_split"}, engines={"torch": "broken"}, rows=1)
    merged = merge([inside, elsewhere, case, other_engine])
    assert [p.id for p in merged] == ["case", "rel2", "rel3"]
    assert merged[0].cases == [SMALL, BIG] and merged[0].rows == 3 and "also breaks batch_split" in merged[0].title
    assert merged[0].adapters == ["tf"] and merged[0].outcome == "mismatch"
