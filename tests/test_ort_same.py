"""ONNX Runtime's SAME_UPPER with a stride leaving 3+ pixels unused: the deviation's model, held against ORT.

The default run found n3-16x16x3-k3x1x5-s2x4-same-f32-r1967083173 (16x16, slack 3 on the columns) outside
`onnxruntime_same_negative_pad_shifts_windows`, whose region then stopped at 9x9; the model matched it, and
a 4,000-case scan (known_deviations.toml) widened the region to 64x64. The cases below are from that scan.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from refconv import deviation_models, deviations, ops, witness
from refconv.compare import compare
from refconv.inputs import np_dtype
from refconv.rows import case_columns
from refconv.spec import ConvSpec

ENTRY = "onnxruntime_same_negative_pad_shifts_windows"
MODEL = "onnxruntime_same_unclamped_pads"
FOUND = ConvSpec.from_id("n3-16x16x3-k3x1x5-s2x4-same-f32-r1967083173")  # the default run's finding

# stride = rows, kernel 1: one output row, SAME total t = 1 - stride. ORT's ComputePad turns t < 0 into t + 1
# and halves it toward 0, so the window starts at row -(t + 1) / 2; SAME reads row 0.
ROW_READ = [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 2), (7, 2)]  # (stride, row ORT reads)

MEASURED_FAILING = [  # every one a mismatch under onnxruntime 1.32.0 in the scan
    FOUND,
    ConvSpec.from_id("n2-35x49x3-k1x4x2-s6x4-same-f16-r1692202163"),  # float16, 35x49, slack 4
    ConvSpec.from_id("n3-6x14x4-k1x2x2-s3x7-same-f32-r35000041"),  # slack 5: head -2
    ConvSpec.from_id("n2-16x14x2-k4x1x2-s4x7-same-f32-g2-relu-r1486480603"),  # grouped, relu, slack 6
    ConvSpec.from_id("n3-2x14x16-k3x1x8-s1x5-same-f32-r1018827992"),  # 16 -> 8 channels
]
MEASURED_PASSING = [  # slack 2 at most: ORT is right
    ConvSpec.from_id("n3-12x18x1-k4x2x3-s4x7-same-f32-r1525448051"),
    ConvSpec.from_id("n3-12x12x4-k2x4x5-s4x2-same-f16-r1573343401"),
]


def row(spec: ConvSpec, outcome: str = "mismatch") -> dict:
    return {**case_columns(spec), "adapter": "onnxruntime", "outcome": outcome}


def column(stride: int) -> ConvSpec:
    """One input column of `stride` rows, a 1x1 kernel, stride `stride`: one output, SAME total 1 - stride."""
    return ConvSpec(n=1, h=stride, w=1, c_in=1, c_out=1, kh=1, kw=1, strides=(stride, 1), bias=False)


@pytest.fixture(scope="module")
def variants() -> Iterator[witness.VariantRunner]:
    import adapters

    reason = adapters.unavailable_reason("onnxruntime")
    if reason:
        pytest.skip(f"onnxruntime: {reason}")
    runner = witness.VariantRunner()
    yield runner
    runner.close()


@pytest.mark.parametrize(("stride", "read"), ROW_READ)
def test_model_reads_the_row_ort_code_computes(stride: int, read: int) -> None:
    spec = column(stride)
    x, w, b = ops.inputs(spec)
    wrong, _ = deviation_models.predict(MODEL, spec, (x, w, b))
    np.testing.assert_allclose(wrong[0, 0, 0, 0], float(x[0, read, 0, 0]) * float(w[0, 0, 0, 0]), rtol=1e-12)


def test_found_row_is_inside_the_entry() -> None:
    assert deviations.derived(row(FOUND))["same_slack"] == 3  # 16 columns, stride 4, kernel 1: total -3
    assert [d.id for d in deviations.load() if d.matches(row(FOUND))] == [ENTRY]
    entry = next(d for d in deviations.load() if d.id == ENTRY)
    assert not any(entry.applies(row(spec)) for spec in MEASURED_PASSING)  # slack 2: outside


@pytest.mark.parametrize(("stride", "read"), ROW_READ)
def test_ort_reads_the_row_the_model_predicts(variants: witness.VariantRunner, stride: int, read: int) -> None:
    spec = column(stride)
    x, w, b = ops.inputs(spec)
    out = variants.output("onnxruntime", spec)
    assert out is not None and out.shape == (1, 1, 1, 1)
    expected = np.float32(x[0, read, 0, 0]) * np.float32(w[0, 0, 0, 0])  # one float32 product, rounded once
    assert float(out[0, 0, 0, 0]) == float(expected)


@pytest.mark.parametrize("spec", MEASURED_FAILING, ids=lambda s: s.id)
def test_measured_failures_are_explained_by_the_model(variants: witness.VariantRunner, spec: ConvSpec) -> None:
    comparison = variants.compare("onnxruntime", spec)
    assert comparison.outcome == "mismatch", comparison.message("onnxruntime", spec)
    assert deviations.explain(row(spec), witness.CaseWitness(variants, spec, "onnxruntime")) == ENTRY


@pytest.mark.parametrize("spec", MEASURED_PASSING, ids=lambda s: s.id)
def test_slack_of_two_passes(variants: witness.VariantRunner, spec: ConvSpec) -> None:
    assert variants.compare("onnxruntime", spec).outcome == "pass"


def test_output_other_than_the_model_is_not_explained(variants: witness.VariantRunner) -> None:
    actual = variants.output("onnxruntime", FOUND)
    assert actual is not None
    failing = row(FOUND)
    assert deviations.explain(failing, witness.CaseWitness(variants, FOUND, "onnxruntime", actual=actual)) == ENTRY
    off_by_one_element = actual.copy()
    off_by_one_element.flat[7] += 1.0
    assert deviations.explain(failing, witness.CaseWitness(variants, FOUND, "onnxruntime",
                                                           actual=off_by_one_element)) == ""
    right, _ = ops.reference(FOUND, ops.inputs(FOUND))  # the right answer is not the modelled wrong one
    as_right = right.astype(np_dtype(FOUND.dtype))
    assert deviations.explain(failing, witness.CaseWitness(variants, FOUND, "onnxruntime", actual=as_right)) == ""


def test_model_outside_the_measured_sizes_is_not_explained(variants: witness.VariantRunner) -> None:
    """A 65-row case shifts too (the model matches) but lies beyond the scan: the region does not excuse it."""
    big = FOUND.replace(h=65)
    actual = variants.output("onnxruntime", big)
    values = ops.inputs(big)
    wrong, bound = deviation_models.predict(MODEL, big, values)
    assert compare(big, wrong, bound, actual).outcome == "pass"
    assert deviations.explain(row(big), witness.CaseWitness(variants, big, "onnxruntime", actual=actual)) == ""
