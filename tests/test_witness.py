"""Witnesses of known deviations: variants run in their own workers, and relation calls are explained only
where a deviation's witness holds on them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from refconv import deviation_models, deviations, metamorphic, ops, witness
from refconv.compare import compare
from refconv.reference import conv2d
from refconv.spec import ConvSpec

WRONG = "fake_adapters:Faulty:mode=wrong"  # the numpy answer with one element off by 1, on every case
SPEC = ConvSpec(n=1, h=4, w=4, c_in=2, c_out=2, kh=3, kw=3)
# A planted entry for the fake adapter: its toggle either spares the case (on=n9: only ids starting n9) or not.
TOGGLE_ENTRY = (f'[fake_wrong]\nadapter = "fake_adapters:Faulty:*"\noutcomes = ["mismatch"]\nreason = "r"\n'
                f'upstream = "u"\nmeasured = "planted"\nexample = "{SPEC.id}"\nwhen = {{ c_in = 2 }}\n')


@pytest.fixture(scope="module")
def variants() -> Iterator[witness.VariantRunner]:
    runner = witness.VariantRunner()
    yield runner
    runner.close()


def test_variant_runner_answers_in_a_worker(variants: witness.VariantRunner) -> None:
    assert variants.compare("numpy", SPEC).outcome == "pass"
    bad = variants.compare(WRONG, SPEC)
    assert bad.outcome == "mismatch" and bad.mismatched == 1
    values = ops.inputs(SPEC.replace(seed=7))  # given inputs travel to the worker
    expected, bound = ops.reference(SPEC, values)
    assert compare(SPEC, expected, bound, variants.output("numpy", SPEC, values)).outcome == "pass"
    assert compare(SPEC, expected, bound, variants.output("numpy", SPEC)).outcome == "mismatch"  # seeded ones


def test_a_label_that_cannot_load_is_unavailable_once(variants: witness.VariantRunner) -> None:
    reply = variants.answer("fake_adapters:Faulty:mode=bogus", SPEC)
    assert reply["kind"] == "unavailable" and "mode must be one of" in reply["error"]
    assert variants.compare("fake_adapters:Faulty:mode=bogus", SPEC).outcome == "unavailable"


@pytest.mark.parametrize(("toggle", "explained"), [("on=n9", "fake_wrong"), ("delay=0.1", "")])
def test_toggle_is_checked_by_running_the_variant(variants: witness.VariantRunner, toggle: str, explained: str) -> None:
    """on=n9 spares this case (the variant passes): explained; delay=0.1 is still wrong: not explained."""
    (entry,) = deviations.parse(TOGGLE_ENTRY + f'toggle = "{toggle}"\n')
    row = {**witness.case_columns(SPEC), "adapter": WRONG, "outcome": "mismatch"}
    case = witness.CaseWitness(variants, SPEC, WRONG)
    assert deviations.explain(row, case, entries=[entry]) == explained
    assert case.output() is not None and case.output().shape == (1, 4, 4, 2)  # recomputed in the worker


def ref(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
    return conv2d(x, w, b, spec.strides, spec.padding, spec.dilations, spec.groups, spec.activation)


def bias_on_width(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
    """Keras's channels_first bug where it applies (NCHW, c_out == out_w), the right answer elsewhere."""
    return deviation_models.predict("keras_bias_on_width", spec, (x, w, b))[0].astype(x.dtype)


# NCHW, 4 filters on a 4-wide output: inside keras_channels_first_bias_on_width; batch 2 for batch_split.
KERAS_CASE = ConvSpec(n=2, h=4, w=4, c_in=2, c_out=4, kh=1, kw=1, layout="NCHW")


def test_a_broken_relation_is_known_only_where_the_model_holds() -> None:
    recorder = witness.Recorder(bias_on_width)
    result = metamorphic.check("bias_after", recorder, KERAS_CASE)
    assert not result.ok
    verdict = witness.explain_calls("keras", recorder.calls)
    assert verdict.known and set(verdict.explained.values()) == {"keras_channels_first_bias_on_width"}
    # the same wrong answer from an engine the entry does not name is a finding
    assert not witness.explain_calls("tf", recorder.calls).known


def test_a_relation_call_with_another_bug_is_not_explained() -> None:
    def also_drops_first_image(x, w, b, spec):  # type: ignore[no-untyped-def]
        out = bias_on_width(x, w, b, spec)
        if len(out) > 1:
            out[0] = 0.0
        return out

    recorder = witness.Recorder(also_drops_first_image)
    assert not metamorphic.check("batch_split", recorder, KERAS_CASE).ok
    verdict = witness.explain_calls("keras", recorder.calls)
    assert not verdict.known and verdict.unexplained  # the batched call matches no model: a new finding


def test_calls_that_agree_with_the_reference_explain_nothing() -> None:
    recorder = witness.Recorder(ref)
    assert metamorphic.check("batch_split", recorder, KERAS_CASE).ok
    verdict = witness.explain_calls("keras", recorder.calls)
    assert len(recorder.calls) == 3 and not verdict.explained and not verdict.unexplained and not verdict.known
