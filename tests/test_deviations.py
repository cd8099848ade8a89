"""Known deviations: the data file parses, rows match exactly the documented behaviour, strict replay."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from refconv import deviation_models, deviations, ops, witness
from refconv.compare import compare
from refconv.errors import SpecError
from refconv.hardware import cpu_features
from refconv.inputs import np_dtype
from refconv.rows import case_columns
from refconv.spec import ConvSpec

SHORT_BY_ONE = ConvSpec(n=1, h=2, w=2, c_in=2, c_out=2, kh=3, kw=3, padding="VALID")  # output (1, 0, 0, 2)
SHORT_BY_FIVE = ConvSpec(n=1, h=2, w=3, c_in=2, c_out=3, kh=7, kw=7, padding="VALID")
SHORT_BY_TWO_STRIDE_2 = ConvSpec(n=1, h=1, w=4, c_in=1, c_out=1, kh=3, kw=1, strides=2, padding="VALID")


SPR_CPU = "x86-64-v4 avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx"  # where entries were measured


def row(spec: ConvSpec, adapter: str, outcome: str, isa: str = "", cpu: str = SPR_CPU) -> dict:
    """A result row: case columns, adapter, outcome, and the kernels (isa) and CPU that ran it ('' : unreported)."""
    return {**case_columns(spec), "adapter": adapter, "outcome": outcome, "isa": isa, "cpu_features": cpu}


def test_every_entry_is_complete() -> None:
    entries = deviations.load()
    assert {d.id for d in entries} >= {
        "tf_valid_empty_output_raises", "tf_onednn_empty_output_wrong_shape",
        "torch_empty_output_raises", "torch_single_channel_ambiguous_strides_wrong_values",
        "tf_onednn_batched_single_channel_row_stride_wrong_values",
    }
    for d in entries:
        assert d.upstream.startswith("https://github.com/"), d.id
        assert d.reason and d.outcomes and d.adapter
        assert d.example_spec.id == d.example  # the example parses as a case id


@pytest.mark.parametrize("entry", deviations.load(), ids=lambda d: d.id)
def test_every_example_falls_inside_its_when(entry: deviations.Deviation) -> None:
    assert entry.applies_case(case_columns(entry.example_spec)), f"{entry.example} is outside {entry.when}"


def test_wrong_value_entries_carry_a_witness() -> None:
    """Data-dependent wrong values are never excused by a region alone: each such entry has a model or toggle."""
    witnessed = {d.id: d.describe_witness() for d in deviations.load() if "mismatch" in d.outcomes}
    assert witnessed == {
        "tf_keras_jax_flush_subnormals": "model flush_subnormals",
        "torch_onednn_bf16_flush_subnormals": "model flush_subnormals",
        "torch_single_channel_ambiguous_strides_wrong_values": "toggle mkldnn=off",
        "torch_mkldnn_bf16_one_output_column_wrong_values": "toggle mkldnn=off",
        "tf_onednn_batched_single_channel_row_stride_wrong_values": "toggle onednn=off",
        "tf_onednn_bf16_one_output_column_wrong_values": "toggle onednn=off",
        "onnxruntime_same_negative_pad_shifts_windows": "model onnxruntime_same_unclamped_pads",
        "keras_channels_first_bias_on_width": "model keras_bias_on_width",
        "torch_mkldnn_bf16_nan_inf_spread_left": "toggle mkldnn=off",  # special values (refconv.special)
        "tf_onednn_bf16_nan_inf_spread_left": "toggle onednn=off",
        "onnx_ref_row_dilation_zero_insertion_nan": "model onnx_ref_dilation_zero_insertion",
        "onnx_ref_col_dilation_zero_insertion_nan": "model onnx_ref_dilation_zero_insertion",
        "tf_eigen_grad_filter_empty_output_wrong_values": "toggle onednn=on",  # Eigen's, witnessed by oneDNN
    }


def _short(spec: ConvSpec) -> dict:
    facts = deviations.derived(case_columns(spec))
    return {key: facts[key] for key in ("short_by", "short_strides", "short_over_stride")}


def test_derived_facts() -> None:
    # short_over_stride = max over axes of k_eff - padded size - stride
    assert _short(SHORT_BY_ONE) == {"short_by": 1, "short_strides": 1, "short_over_stride": 0}
    assert _short(SHORT_BY_FIVE) == {"short_by": 5, "short_strides": 5, "short_over_stride": 4}
    assert _short(SHORT_BY_TWO_STRIDE_2) == {"short_by": 2, "short_strides": 1, "short_over_stride": 0}
    explicit = ConvSpec(n=1, h=2, w=2, c_in=1, c_out=1, kh=3, kw=3, padding=((0, 0), (1, 0)))
    assert _short(explicit) == {"short_by": 1, "short_strides": 1, "short_over_stride": 0}
    # SAME, in=4, k=1, s=4: out=1, slack = 4 - 0 - 1 = 3 rows; cols in=4, k=1, s=2: out=2, slack = 4 - 2 - 1 = 1
    slack = ConvSpec(n=1, h=4, w=4, c_in=1, c_out=2, kh=1, kw=1, strides=(4, 2))
    assert deviations.derived(case_columns(slack))["same_slack"] == 3
    assert deviations.derived(case_columns(slack.replace(padding="VALID")))["same_slack"] == 0
    # c_out_is_out_w: 4 filters, SAME stride 1 on a width of 4
    wide = ConvSpec(n=1, h=4, w=4, c_in=1, c_out=4, kh=1, kw=1)
    assert deviations.derived(case_columns(wide))["c_out_is_out_w"] is True
    assert deviations.derived(case_columns(wide.replace(c_out=3)))["c_out_is_out_w"] is False
    assert deviations.derived({"h": 1}) == {}


AMX = "onednn:avx512_core_amx"


@pytest.mark.parametrize(("spec", "adapter", "outcome", "isa", "expected"), [
    (SHORT_BY_ONE, "tf", "wrong_shape", AMX, "tf_onednn_empty_output_wrong_shape"),
    (SHORT_BY_ONE, "tf:onednn=on", "raised", "onednn:avx2", "tf_onednn_empty_output_wrong_shape"),  # any oneDNN level
    (SHORT_BY_ONE, "tf:onednn=off", "wrong_shape", "eigen", ""),  # oneDNN off is right here: no excuse
    (SHORT_BY_ONE, "tf", "wrong_shape", "eigen", ""),  # tf on an AVX2 CPU runs Eigen by default: right there too
    (SHORT_BY_ONE, "tf", "wrong_shape", "", ""),  # kernels unreported: a kernel-bound entry predicts nothing
    (SHORT_BY_ONE.replace(dtype="float64"), "tf", "wrong_shape", "eigen", ""),  # Eigen path, correct
    (SHORT_BY_FIVE, "tf", "raised", AMX, "tf_valid_empty_output_raises"),
    (SHORT_BY_FIVE, "tf:onednn=off", "raised", "eigen", "tf_valid_empty_output_raises"),
    (SHORT_BY_FIVE, "tf", "raised", "", "tf_valid_empty_output_raises"),  # any kernels: none needed
    (SHORT_BY_TWO_STRIDE_2, "tf:onednn=off", "raised", "eigen", ""),  # 2 short but stride 2: TF gives the empty output
    (SHORT_BY_ONE, "torch", "raised", "aten", "torch_empty_output_raises"),
    (SHORT_BY_ONE, "torch:threads=1", "raised", "onednn:avx2", "torch_empty_output_raises"),
    (SHORT_BY_ONE, "torch", "mismatch", AMX, ""),
    (SHORT_BY_ONE, "tfx.conv:Mine", "raised", AMX, ""),  # a third party's path is never excused by tf's entries
    (ConvSpec(n=1, h=5, w=5, c_in=1, c_out=1, kh=3, kw=3), "torch", "raised", AMX, ""),  # non-empty output
])
def test_match(spec: ConvSpec, adapter: str, outcome: str, isa: str, expected: str) -> None:
    assert deviations.match(row(spec, adapter, outcome, isa)) == expected


def test_parse_rejects_malformed_entries() -> None:
    with pytest.raises(SpecError, match="known deviation 'bad': unknown keys \\['adaptor'\\]"):
        deviations.parse('[bad]\nadaptor = "tf"\noutcomes = ["raised"]\nreason = "r"\nupstream = "u"\nexample = "e"\n'
                         'measured = "m"\n')
    with pytest.raises(SpecError, match="missing keys \\['example', 'measured'\\]"):
        deviations.parse('[bad]\nadapter = "tf"\noutcomes = ["raised"]\nreason = "r"\nupstream = "u"\n')


ENTRY = (f'[e]\nadapter = "tf"\noutcomes = ["mismatch"]\nreason = "r"\nupstream = "u"\nexample = "{SHORT_BY_ONE.id}"\n'
         'measured = "m"\n')


@pytest.mark.parametrize(("extra", "message"), [
    ("when = { c_inn = 1 }", "unknown when keys \\['c_inn'\\]"),
    ("when = { h = { least = 2 } }", "when.h range takes min and max"),
    ("exact = false", "'exact' is gone; an inexact entry needs a witness"),
    ('model = "nope"', "unknown model 'nope'"),
    ('toggle = "onednn"', "toggle must be key=value"),
    ('model = "keras_bias_on_width"\ntoggle = "onednn=off"', "one witness, model or toggle, not both"),
    ('replay = "twice"', "replay must be one of \\['fresh'\\], got 'twice'"),
    ("when = { h = 3 }", "example n1-2x2x2-k3x3x2-s1x1-valid-f32 falls outside its when"),
    ('when = { dtype = "float64" }', "falls outside its when"),
])
def test_parse_rejects_bad_conditions_and_witnesses(extra: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        deviations.parse(ENTRY + extra + "\n")


def test_when_accepts_row_columns_and_derived_facts() -> None:
    (entry,) = deviations.parse(ENTRY + "when = { op = \"conv2d\", relation = \"\", short_by = 1, sw_gt_sh = false }\n")
    assert entry.applies(case_columns(SHORT_BY_ONE) | {"relation": ""})


def test_ranges_and_lists() -> None:
    (entry,) = deviations.parse(
        '[e]\nadapter = ["a", "b:*"]\noutcomes = ["raised"]\nreason = "r"\nupstream = "u"\nmeasured = "m"\n'
        f'example = "{SHORT_BY_ONE.id}"\nwhen = {{ h = {{ min = 2, max = 3 }}, dtype = ["float32"] }}\n')
    assert entry.matches(row(SHORT_BY_ONE, "b:x=1", "raised"))
    assert not entry.matches(row(SHORT_BY_ONE.replace(h=4), "a", "raised"))
    assert not entry.matches(row(SHORT_BY_ONE.replace(dtype="float64"), "a", "raised"))
    assert not entry.matches(row(SHORT_BY_ONE, "c", "raised"))


def test_strict_reports_entries_that_no_longer_reproduce() -> None:
    outcomes = {"tf": "wrong_shape", "torch": "pass"}  # as if torch had fixed its check
    stale = deviations.strict(lambda label, spec: outcomes[label], ["tf", "torch"])
    stale_ids = {line.split(":")[0] for line in stale}
    # every tf entry that does not expect wrong_shape, and every torch entry (torch "passes" now)
    tf_stale = {d.id for d in deviations.load() if d.covers("tf") and "wrong_shape" not in d.outcomes}
    assert "tf_valid_empty_output_raises" in tf_stale
    assert stale_ids == tf_stale | {d.id for d in deviations.load() if d.covers("torch")}
    assert any(line.startswith("torch_empty_output_raises: torch gave 'pass'") for line in stale)
    assert not any(line.startswith("tf_onednn_empty_output_wrong_shape") for line in stale)


# Each entry that names tf or torch, on that framework here: (label, entry).
STACK = [(label, d) for label in ("tf", "torch") for d in deviations.load() if d.covers(label)]


@pytest.mark.parametrize(("label", "entry"), STACK, ids=[f"{d.id}@{label}" for label, d in STACK])
def test_entries_reproduce_on_this_stack(label: str, entry: deviations.Deviation) -> None:
    """Replay the entry's own example on the real framework: it still shows its behaviour wherever its hardware
    conditions hold on the kernels the adapter runs it on here; elsewhere it skips as not applicable here."""
    pytest.importorskip({"tf": "tensorflow", "torch": "torch"}[label], reason=f"{label} is not installed")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from refconv.conformance.check import adapter_isa, load_adapter, run

    adapter, _ = load_adapter(label)
    declined = ops.unsupported_reason(adapter, entry.example_spec)
    if declined:
        pytest.skip(f"{label} declines {entry.id}'s example {entry.example} here: {declined}")
    in_worker = witness.fresh_compare  # a crash (or replay = "fresh") is replayed in a new worker process
    skipped: list[str] = []
    stale = deviations.strict(lambda lab, spec: run(adapter, spec).outcome, [label], [entry],
                              isolated=lambda lab, spec: in_worker(lab, spec).outcome,
                              isa=lambda lab, spec: adapter_isa(adapter, spec), skipped=skipped)
    if skipped:
        pytest.skip("; ".join(skipped))
    assert stale == []


# --- witnesses: a deviation explains only what it predicts ----------------------------------------


@dataclass
class FakeWitness:
    """A witness with planted answers: the adapter's output and which variant labels pass."""

    spec: ConvSpec
    actual: np.ndarray | None = None
    passing: tuple[str, ...] = ()
    asked: list[str] = field(default_factory=list)

    def inputs(self) -> tuple:
        return ops.inputs(self.spec)

    def output(self) -> np.ndarray | None:
        return self.actual

    def passes(self, label: str) -> bool:
        self.asked.append(label)
        return label in self.passing


# A float64 VALID 64x64 single-channel case: inside the old torch rule (c_in = 1, any dtype and size),
# outside everything that was measured failing.
PLANTED_64 = ConvSpec(n=1, h=64, w=64, c_in=1, c_out=2, kh=3, kw=3, padding="VALID", dtype="float64")
TORCH_F32 = ConvSpec.from_id("n1-5x2x1-k4x4x2-s1x3-same-f32-d2x1-r278")  # the torch entry's example
TF_F32 = ConvSpec.from_id("n2-2x1x1-k1x2x1-s1x2-same-f32-nobias")  # the tf batched entry's example


def test_planted_torch_float64_valid_64x64_single_channel_mismatch_is_not_explained() -> None:
    witness = FakeWitness(PLANTED_64, passing=("torch:mkldnn=off",))  # even a toggle that passes cannot excuse it
    assert deviations.explain(row(PLANTED_64, "torch", "mismatch"), witness) == ""
    assert deviations.explain(row(PLANTED_64.replace(layout="NCHW"), "torch-nn", "mismatch"), witness) == ""


def test_planted_tf_float64_mismatch_is_not_explained() -> None:
    """The old TF rule had no dtype limit: a float64 batched single-channel mismatch was excused."""
    planted = TF_F32.replace(dtype="float64")
    witness = FakeWitness(planted, passing=("tf:onednn=off",))
    assert deviations.explain(row(planted, "tf", "mismatch"), witness) == ""
    assert deviations.explain(row(PLANTED_64.replace(n=2), "tf", "mismatch"), witness) == ""


@pytest.mark.parametrize(("spec", "label", "toggled", "entry"), [
    (TORCH_F32, "torch", "torch:mkldnn=off", "torch_single_channel_ambiguous_strides_wrong_values"),
    (TORCH_F32, "torch-nn:threads=1", "torch-nn:mkldnn=off:threads=1",
     "torch_single_channel_ambiguous_strides_wrong_values"),
    (TF_F32, "tf", "tf:onednn=off", "tf_onednn_batched_single_channel_row_stride_wrong_values"),
    (TF_F32, "tf:onednn=on", "tf:onednn=off", "tf_onednn_batched_single_channel_row_stride_wrong_values"),
])
def test_toggle_explains_only_where_the_variant_passes(spec: ConvSpec, label: str, toggled: str, entry: str) -> None:
    failing = row(spec, label, "mismatch", AMX)  # on the AVX-512 kernels where both entries were measured
    both_fail = FakeWitness(spec)
    assert deviations.explain(failing, both_fail) == ""  # the variant fails too: a different bug
    assert both_fail.asked == [toggled]
    assert deviations.explain(failing) == ""  # no witness, no excuse
    assert deviations.explain(failing, FakeWitness(spec, passing=(toggled,))) == entry
    # the same failure on oneDNN's AVX2 kernels (a capped oneDNN, or an AVX2 CPU): measured right there, never excused
    avx2 = row(spec, label, "mismatch", "onednn:avx2", "x86-64-v3 avx2 fma")
    assert deviations.explain(avx2, FakeWitness(spec, passing=(toggled,))) == ""


def test_toggled_labels() -> None:
    assert deviations.toggled("tf", "onednn=off") == "tf:onednn=off"
    assert deviations.toggled("tf:onednn=on", "onednn=off") == "tf:onednn=off"
    assert deviations.toggled("torch:threads=1", "mkldnn=off") == "torch:mkldnn=off:threads=1"


KERAS = ConvSpec.from_id("n1-4x4x1-k1x1x4-s1x1-same-f32-nchw")
ORT = ConvSpec.from_id("n1-4x4x1-k1x1x1-s4x2-same-f16")


@pytest.mark.parametrize(("spec", "label", "model", "entry"), [
    (KERAS, "keras", "keras_bias_on_width", "keras_channels_first_bias_on_width"),
    (KERAS.replace(activation="relu", dtype="bfloat16", seed=3), "keras", "keras_bias_on_width",
     "keras_channels_first_bias_on_width"),
    (ORT, "onnxruntime", "onnxruntime_same_unclamped_pads", "onnxruntime_same_negative_pad_shifts_windows"),
    (ORT.replace(h=9, w=6, kh=1, kw=2, strides=(5, 4), dtype="float32"), "onnxruntime",
     "onnxruntime_same_unclamped_pads", "onnxruntime_same_negative_pad_shifts_windows"),
])
def test_model_explains_only_outputs_that_match_it(spec: ConvSpec, label: str, model: str, entry: str) -> None:
    values = ops.inputs(spec)
    right, bound = ops.reference(spec, values)
    wrong, _ = deviation_models.predict(model, spec, values)
    as_modelled = wrong.astype(np_dtype(spec.dtype))  # what the framework returns: the model, rounded
    assert compare(spec, right, bound, as_modelled).outcome == "mismatch"  # the model is a wrong answer here
    failing = row(spec, label, "mismatch")
    assert deviations.explain(failing, FakeWitness(spec, as_modelled)) == entry
    other_bug = as_modelled.copy()
    other_bug.flat[-1] += 1.0  # one more element off: not what the model predicts
    assert deviations.explain(failing, FakeWitness(spec, other_bug)) == ""
    assert deviations.explain(failing, FakeWitness(spec, None)) == ""  # no output to check
    assert deviations.explain(failing) == ""


def test_keras_model_error_is_bias_of_width_minus_bias_of_channel() -> None:
    values = ops.inputs(KERAS)
    right, _ = ops.reference(KERAS, values)
    wrong, _ = deviation_models.predict("keras_bias_on_width", KERAS, values)
    b = values[2]
    # (1, 4, 4, 4) NHWC: element [n, h, j, c] is off by b[j] - b[c]
    expected_error = np.broadcast_to(b[None, None, :, None] - b[None, None, None, :], wrong.shape)
    np.testing.assert_allclose(wrong - right, expected_error, atol=1e-12)


def test_ort_model_shifts_the_first_window_by_the_measured_head() -> None:
    """4 rows, kernel 1, stride 4: SAME total -3, the window starts at row 1 (measured), not row 0."""
    spec = ConvSpec(n=1, h=4, w=1, c_in=1, c_out=1, kh=1, kw=1, strides=(4, 1), bias=False, dtype="float32")
    x, w, b = ops.inputs(spec)
    wrong, _ = deviation_models.predict("onnxruntime_same_unclamped_pads", spec, (x, w, b))
    np.testing.assert_allclose(wrong[0, 0, 0, 0], float(x[0, 1, 0, 0]) * float(w[0, 0, 0, 0]), rtol=1e-12)


# --- every recorded deviation, replayed on its framework with its real witness ---------------------

# The adapter each entry is replayed on: its first plain pattern (tf, torch, onnxruntime, ...).
REPLAY = [(d, next(p for p in d.adapter if "*" not in p)) for d in deviations.load()]


@pytest.fixture(scope="module")
def variants() -> Iterator[witness.VariantRunner]:
    runner = witness.VariantRunner()
    yield runner
    runner.close()


@pytest.mark.slow
@pytest.mark.parametrize(("entry", "label"), REPLAY, ids=[d.id for d, _ in REPLAY])
def test_recorded_deviations_are_found_and_explained(entry: deviations.Deviation, label: str,
                                                      variants: witness.VariantRunner) -> None:
    """Each entry's example, run on its framework, fails as recorded and the entry explains it, witness checked."""
    import adapters

    reason = adapters.unavailable_reason(label)
    if reason:
        pytest.skip(f"{label}: {reason}")
    spec = entry.example_spec
    isa = variants.isa(label, spec)  # the kernels the label runs the example on here, asked in its worker
    reason = entry.not_applicable(label, isa, cpu_features())
    if reason:
        pytest.skip(reason)
    comparison = witness.fresh_compare(label, spec) if entry.replay == "fresh" else variants.compare(label, spec)
    if comparison.outcome == "unsupported":
        pytest.skip(f"{label} declines {entry.example} here: {comparison.error}")
    failing = {**case_columns(spec), "adapter": label, "outcome": comparison.outcome, "isa": isa,
               "cpu_features": cpu_features()}
    assert comparison.outcome in entry.outcomes, comparison.message(label, spec)
    assert deviations.explain(failing, witness.CaseWitness(variants, spec, label)) == entry.id


def test_conformance_verdict_excuses_only_a_witnessed_failure() -> None:
    """The pytest plugin's verdict: xfail where the toggle passes, a failure where it does not or outside."""
    from refconv.compare import Comparison
    from refconv.conformance.check import verdict

    mismatch = Comparison("mismatch", (2, 2, 1, 1), (2, 2, 1, 1), 4, 2)
    passing = FakeWitness(TF_F32, passing=("tf:onednn=off",))
    assert verdict("tf", TF_F32, mismatch, passing, isa=AMX).action == "xfail"
    failed = verdict("tf", TF_F32, mismatch, FakeWitness(TF_F32), isa=AMX)
    assert failed.action == "fail" and "does not explain this 'mismatch'" in failed.message
    assert verdict("tf", TF_F32, mismatch, isa=AMX).action == "fail"  # no witness given
    avx2 = verdict("tf", TF_F32, mismatch, passing, isa="onednn:avx2")  # not applicable on these kernels
    assert avx2.action == "fail" and "not applicable here: tf_onednn_batched_single_channel" in avx2.message
    planted = FakeWitness(PLANTED_64, passing=("torch:mkldnn=off",))
    assert verdict("torch", PLANTED_64, mismatch, planted, isa=AMX).action == "fail"  # outside every measured region
    assert verdict("tf", TF_F32, Comparison("pass", (2, 2, 1, 1), (2, 2, 1, 1), 4), isa=AMX).action == "pass"


# --- onnx-ref dilates a kernel by inserting zeros: 0 * Inf = NaN under the holes --------------------

ZERO_INSERTION = "onnx_ref_dilation_zero_insertion"


def test_zero_insertion_model_reads_the_holes() -> None:
    """1x3 input [1, Inf, 3], kernel [1, 10] dilated by 2: the right answer 31, the model 1 + 0 * Inf + 30 = NaN."""
    spec = ConvSpec(n=1, h=1, w=3, c_in=1, c_out=1, kh=1, kw=2, padding="VALID", dilations=(1, 2), bias=False,
                    dtype="float64")
    x = np.array([1.0, np.inf, 3.0]).reshape(1, 1, 3, 1)  # NHWC
    w = np.array([1.0, 10.0]).reshape(1, 2, 1, 1)  # HWIO
    right, _ = ops.reference(spec, (x, w, None))
    wrong, _ = deviation_models.predict(ZERO_INSERTION, spec, (x, w, None))
    assert right.shape == wrong.shape == (1, 1, 1, 1)
    assert right[0, 0, 0, 0] == 31.0 and np.isnan(wrong[0, 0, 0, 0])


def test_zero_insertion_model_is_the_conv_on_finite_inputs() -> None:
    """Without special values the inserted zeros add exact zeros: the model is the right answer."""
    spec = ConvSpec(n=2, h=9, w=8, c_in=4, c_out=2, kh=3, kw=2, strides=(2, 1), dilations=(2, 3), groups=2,
                    padding=((1, 2), (0, 3)), dtype="float64")
    values = ops.inputs(spec)
    right, bound = ops.reference(spec, values)
    wrong, wrong_bound = deviation_models.predict(ZERO_INSERTION, spec, values)
    np.testing.assert_allclose(wrong, right, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(wrong_bound, bound, rtol=1e-12)


@pytest.mark.parametrize("entry", [d for d in deviations.load() if d.model == ZERO_INSERTION], ids=lambda d: d.id)
def test_zero_insertion_explains_only_outputs_that_match_it(entry: deviations.Deviation) -> None:
    """The entry's example: the modelled NaNs are explained; one more NaN, the right answer or no dilation are not."""
    spec = entry.example_spec
    values = ops.inputs(spec)
    right, bound = ops.reference(spec, values)
    wrong, _ = deviation_models.predict(ZERO_INSERTION, spec, values)
    as_modelled = wrong.astype(np_dtype(spec.dtype))  # what onnx.reference returns: the model, rounded
    assert compare(spec, right, bound, as_modelled).outcome == "mismatch"  # NaNs the reference does not have
    failing = row(spec, "onnx-ref", "mismatch")
    assert deviations.explain(failing, FakeWitness(spec, as_modelled)) == entry.id
    spread = as_modelled.copy()
    spread.flat[np.flatnonzero(np.isfinite(wrong))[0]] = np.nan  # one NaN more than zero insertion makes
    assert deviations.explain(failing, FakeWitness(spec, spread)) == ""
    assert deviations.explain(failing, FakeWitness(spec, right.astype(np_dtype(spec.dtype)))) == ""
    assert deviations.explain(failing) == ""  # no witness, no excuse
    undilated = spec.replace(dilations=(1, 1))  # outside the entry even when the output matches a model
    assert deviations.explain(row(undilated, "onnx-ref", "mismatch"), FakeWitness(undilated, as_modelled)) == ""
    assert deviations.explain(row(spec, "onnxruntime", "mismatch"), FakeWitness(spec, as_modelled)) == ""


# --- hardware: where an entry applies, where it is not applicable here, and its standing in a run -----------

AMX_CPU = "x86-64-v4 avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx"
AVX2_CPU = "x86-64-v3 avx2 fma"
AVX512_ONLY = (f'[e]\nadapter = ["tf", "tf:*"]\noutcomes = ["mismatch", "raised"]\nreason = "r"\nupstream = "u"\n'
               f'measured = "m"\nexample = "{SHORT_BY_ONE.id}"\n'
               'when = { op = "conv2d", c_in = 2, kernels = "onednn", onednn_isa = ["avx512_core", '
               '"avx512_core_amx"] }\n')


def hw_row(spec: ConvSpec, adapter: str, outcome: str, isa: str, cpu: str = AMX_CPU, explained: str = "") -> dict:
    return {**row(spec, adapter, outcome), "isa": isa, "cpu_features": cpu, "known_deviation": explained}


def test_hardware_conditions_hold_only_on_the_kernels_named() -> None:
    (entry,) = deviations.parse(AVX512_ONLY)
    assert entry.hardware == {"kernels": "onednn", "onednn_isa": ["avx512_core", "avx512_core_amx"]}
    assert entry.applies(hw_row(SHORT_BY_ONE, "tf", "raised", "onednn:avx512_core_amx"))
    assert entry.applies(hw_row(SHORT_BY_ONE, "tf", "raised", "onednn:avx512_core"))
    for isa in ("onednn:avx2", "onednn:avx512_core_vnni", "eigen", "", "onednn"):
        assert not entry.applies(hw_row(SHORT_BY_ONE, "tf", "raised", isa)), isa
    assert not entry.applies({**row(SHORT_BY_ONE, "tf", "raised")})  # a row without isa: kernels unknown
    assert entry.applies_case(row(SHORT_BY_ONE, "tf", "raised"))  # the case region alone holds
    # exact: the hardware decides whether the row is explained
    assert deviations.explain(hw_row(SHORT_BY_ONE, "tf", "raised", "onednn:avx512_core_amx"), entries=[entry]) == "e"
    assert deviations.explain(hw_row(SHORT_BY_ONE, "tf", "raised", "onednn:avx2", AVX2_CPU), entries=[entry]) == ""


def test_not_applicable_reason_names_the_conditions_the_label_and_its_kernels() -> None:
    (entry,) = deviations.parse(AVX512_ONLY)
    assert entry.not_applicable("tf", "onednn:avx512_core_amx", AMX_CPU) == ""
    assert entry.not_applicable("tf", "eigen", AVX2_CPU) == (
        "not applicable here: e needs kernels = onednn; onednn_isa in avx512_core, avx512_core_amx; "
        f"tf runs eigen on {AVX2_CPU}")
    assert "tf runs unreported kernels (its adapter has no isa())" in entry.not_applicable("tf", "", AMX_CPU)
    (free,) = deviations.parse(AVX512_ONLY.replace(', kernels = "onednn", onednn_isa = ["avx512_core", '
                                                   '"avx512_core_amx"]', ""))
    assert free.hardware == {} and free.not_applicable("tf", "", "") == ""  # no conditions: any machine


def test_cpu_feature_conditions() -> None:
    (entry,) = deviations.parse(AVX512_ONLY.replace('kernels = "onednn", onednn_isa = ["avx512_core", '
                                                    '"avx512_core_amx"]', 'cpu_avx512f = true, x86_level = 4'))
    assert entry.hardware_holds("onednn:avx2", AMX_CPU)  # the CPU's features, whatever oneDNN was capped at
    assert not entry.hardware_holds("onednn:avx2", AVX2_CPU)
    assert entry.describe_hardware() == "cpu_avx512f = True; x86_level = 4"


def test_strict_skips_an_entry_not_applicable_here_and_fails_one_that_applies_but_passes() -> None:
    (entry,) = deviations.parse(AVX512_ONLY)
    skipped: list[str] = []
    ran: list[str] = []

    def run(label: str, spec: ConvSpec) -> str:
        ran.append(label)
        return "pass"

    stale = deviations.strict(run, ["tf"], [entry], isa=lambda label, spec: "onednn:avx2", skipped=skipped)
    assert stale == [] and ran == []  # not replayed: it cannot hold on these kernels
    assert skipped and skipped[0].startswith("not applicable here: e needs kernels = onednn")
    stale = deviations.strict(run, ["tf"], [entry], isa=lambda label, spec: "onednn:avx512_core_amx", skipped=skipped)
    assert ran == ["tf"] and len(stale) == 1  # applies here and passes: fixed here? The strict test fails
    assert stale[0].startswith("e: tf gave 'pass'") and "no longer reproduces" in stale[0]
    assert len(deviations.strict(run, ["tf"], [entry])) == 1  # no isa given: replayed as before


def test_strict_reports_a_declined_example_as_skipped_not_stale() -> None:
    (entry,) = deviations.parse(AVX512_ONLY)
    skipped: list[str] = []
    stale = deviations.strict(lambda label, spec: "unsupported", ["tf:onednn=off"], [entry],
                              isa=lambda label, spec: "onednn:avx512_core", skipped=skipped)
    assert stale == [] and skipped == [f"tf:onednn=off declines e's example {SHORT_BY_ONE.id} here"]


@pytest.mark.parametrize(("rows", "expected"), [
    # a row the entry explains
    ([hw_row(SHORT_BY_ONE, "tf", "raised", "onednn:avx512_core_amx", explained="e")], deviations.APPLIED),
    # its hardware and region hold on a row that passes: fixed here?
    ([hw_row(SHORT_BY_ONE, "tf", "pass", "onednn:avx512_core_amx"),
      hw_row(SHORT_BY_ONE, "tf", "raised", "onednn:avx2")], deviations.FIXED_HERE),
    # its adapter's rows all ran other kernels: not applicable here, even inside the case region
    ([hw_row(SHORT_BY_ONE, "tf", "pass", "onednn:avx2", AVX2_CPU),
      hw_row(SHORT_BY_ONE, "tf:onednn=off", "pass", "eigen", AVX2_CPU)], deviations.NOT_APPLICABLE),
    # its hardware holds but no row falls inside its case region
    ([hw_row(SHORT_BY_ONE.replace(c_in=1, c_out=1), "tf", "pass", "onednn:avx512_core")], deviations.NOT_EXERCISED),
    # no row of its adapters at all (the hardware of another engine's rows says nothing about it)
    ([hw_row(SHORT_BY_ONE, "torch", "raised", "onednn:avx2")], deviations.NOT_EXERCISED),
    ([], deviations.NOT_EXERCISED),
])
def test_status_of_an_entry_over_a_runs_rows(rows: list[dict], expected: str) -> None:
    (entry,) = deviations.parse(AVX512_ONLY)
    assert deviations.status(entry, rows) == expected
    found = deviations.classify(entry, rows)
    assert found.status == expected and found.describe(entry).startswith(expected)


def test_status_counts_and_words() -> None:
    (entry,) = deviations.parse(AVX512_ONLY)
    rows = [hw_row(SHORT_BY_ONE, "tf", "pass", "onednn:avx2", AVX2_CPU),
            hw_row(SHORT_BY_ONE, "tf", "pass", "eigen", AVX2_CPU)]
    found = deviations.classify(entry, rows)
    assert (found.adapter_rows, found.hardware_rows, found.region_rows, found.explained) == (2, 0, 0, 0)
    assert found.describe(entry) == ("not applicable here: needs kernels = onednn; onednn_isa in avx512_core, "
                                     "avx512_core_amx; its adapters ran onednn:avx2, eigen")
    fixed = deviations.classify(entry, [hw_row(SHORT_BY_ONE, "tf", "pass", "onednn:avx512_core")])
    assert fixed.describe(entry).startswith("fixed here?: 1 row(s) inside its when (hardware included), none shows it")
    (free,) = deviations.parse(AVX512_ONLY.replace(', kernels = "onednn", onednn_isa = ["avx512_core", '
                                                   '"avx512_core_amx"]', ""))
    # an entry without hardware conditions is never 'not applicable': its rows decide
    assert deviations.status(free, rows) == deviations.FIXED_HERE


def test_measured_is_required() -> None:
    with pytest.raises(SpecError, match="missing keys \\['measured'\\]"):
        deviations.parse(AVX512_ONLY.replace('measured = "m"\n', ""))


def test_every_entry_says_where_it_was_measured() -> None:
    for d in deviations.load():
        assert d.measured, d.id
        assert "2026" in d.measured, d.id  # dated


def test_verdict_predicts_only_where_the_hardware_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The conformance verdict's row carries the kernels and CPU: an entry not applicable here excuses nothing."""
    from refconv.compare import Comparison
    from refconv.conformance.check import verdict

    (entry,) = deviations.parse(AVX512_ONLY)
    monkeypatch.setattr(deviations, "load", lambda: (entry,))
    raised = Comparison("raised", (1, 0, 0, 2), None, error="boom")
    assert verdict("tf", SHORT_BY_ONE, raised, isa="onednn:avx512_core_amx").action == "xfail"
    elsewhere = verdict("tf", SHORT_BY_ONE, raised, isa="onednn:avx2")
    assert elsewhere.action == "fail"
    assert "inside the case region of a known deviation, but not applicable here: e needs" in elsewhere.message
    assert verdict("tf", SHORT_BY_ONE, raised).action == "fail"  # kernels unreported: nothing predicted
    passing = Comparison("pass", (1, 0, 0, 2), (1, 0, 0, 2), 0)
    assert verdict("tf", SHORT_BY_ONE, passing, isa="onednn:avx2").action == "pass"  # not predicted there
    stale = verdict("tf", SHORT_BY_ONE, passing, isa="onednn:avx512_core")  # predicted, and it passes: fixed here?
    assert stale.action == "fail" and "no longer reproduces here (strict; fixed here? tf ran onednn:avx512_core)" \
        in stale.message


def test_fresh_and_crash_entries_replay_in_a_worker() -> None:
    (fresh,) = deviations.parse(ENTRY + 'replay = "fresh"\n')
    (plain,) = deviations.parse(ENTRY)
    (crash,) = deviations.parse(ENTRY.replace('["mismatch"]', '["crashed"]'))
    assert fresh.isolated and crash.isolated and not plain.isolated
    where: list[str] = []
    deviations.strict(lambda label, spec: where.append("in process") or "mismatch", ["tf"], [fresh, plain, crash],
                      isolated=lambda label, spec: where.append("worker") or "crashed")
    assert where == ["worker", "in process", "worker"]
