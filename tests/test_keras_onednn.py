"""keras:onednn=off|on: the option reaches TensorFlow in the keras worker, and TF's oneDNN deviations explain a
keras row only where keras:onednn=off passes the same case (Keras' Conv2D runs TF's CPU kernels)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

import adapters
from refconv import deviations, ops, witness
from refconv.hardware import cpu_features
from refconv.rows import case_columns
from refconv.spec import ConvSpec

# The default run's minimal keras case: 5 images, one channel, one output column, column stride 3.
KERAS_F32 = ConvSpec.from_id("n5-2x1x1-k3x3x1-s1x3-same-f32-r1696962229")
BATCHED = "tf_onednn_batched_single_channel_row_stride_wrong_values"
HAS_KERAS = all(importlib.util.find_spec(m) is not None for m in ("keras", "tensorflow"))
needs_keras = pytest.mark.skipif(not HAS_KERAS, reason="keras and tensorflow are not installed")


AMX_CPU = "x86-64-v4 avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx"


def row(spec: ConvSpec, adapter: str, outcome: str, isa: str = "onednn:avx512_core_amx", cpu: str = AMX_CPU) -> dict:
    """A keras row as run here by default: oneDNN's AMX-level kernels (the entries' hardware conditions hold)."""
    return {**case_columns(spec), "adapter": adapter, "outcome": outcome, "isa": isa, "cpu_features": cpu}


@dataclass
class PlantedWitness:
    """A witness whose variant verdicts are planted: which labels pass the case."""

    spec: ConvSpec
    passing: tuple[str, ...] = ()
    asked: list[str] = field(default_factory=list)

    def inputs(self) -> tuple:
        return ops.inputs(self.spec)

    def output(self) -> np.ndarray | None:
        return None

    def passes(self, label: str) -> bool:
        self.asked.append(label)
        return label in self.passing


def test_bad_onednn_value_is_one_line_error() -> None:
    """Refused before Keras or TensorFlow is imported, so it needs neither."""
    with pytest.raises(adapters.AdapterError, match="keras option onednn must be 'on' or 'off', got 'maybe'"):
        adapters.load("keras:onednn=maybe")


def test_toggle_turns_keras_labels_into_the_off_variant() -> None:
    assert deviations.toggled("keras", "onednn=off") == "keras:onednn=off"
    assert deviations.toggled("keras:onednn=on", "onednn=off") == "keras:onednn=off"


@pytest.mark.parametrize("label", ["keras", "keras:onednn=on"])
def test_onednn_entry_explains_a_keras_row_only_where_the_toggle_passes(label: str) -> None:
    failing = row(KERAS_F32, label, "mismatch")
    both_fail = PlantedWitness(KERAS_F32)
    assert deviations.explain(failing, both_fail) == ""  # oneDNN off fails too: another bug
    assert both_fail.asked == ["keras:onednn=off"]  # asked of keras' own variant, not of tf's
    assert deviations.explain(failing) == ""  # no witness, no excuse
    assert deviations.explain(failing, PlantedWitness(KERAS_F32, passing=("tf:onednn=off",))) == ""
    assert deviations.explain(failing, PlantedWitness(KERAS_F32, passing=("keras:onednn=off",))) == BATCHED


def test_onednn_entries_never_excuse_keras_with_onednn_off() -> None:
    everything_passes = PlantedWitness(KERAS_F32, passing=("keras:onednn=off", "keras", "tf:onednn=off"))
    assert deviations.explain(row(KERAS_F32, "keras:onednn=off", "mismatch", isa="eigen"), everything_passes) == ""


AVX2_CPU = "x86-64-v3 avx2 fma"


@pytest.mark.parametrize(("isa", "cpu"), [("onednn:avx2", AVX2_CPU), ("onednn:avx2", AMX_CPU),
                                          ("onednn:avx2_vnni", AMX_CPU), ("eigen", AVX2_CPU), ("", AMX_CPU)])
def test_onednn_entry_is_not_applicable_on_other_kernels(isa: str, cpu: str) -> None:
    """Measured: the batched single-channel bug lives in oneDNN's AVX-512 kernels; at avx2 (a capped oneDNN, or an
    AVX2 CPU with oneDNN forced on) every case is right, so a keras failure there is a finding, witness or not."""
    failing = row(KERAS_F32, "keras", "mismatch", isa=isa, cpu=cpu)
    assert deviations.explain(failing, PlantedWitness(KERAS_F32, passing=("keras:onednn=off",))) == ""
    (entry,) = [d for d in deviations.load() if d.id == BATCHED]
    assert entry.not_applicable("keras", isa, cpu).startswith(f"not applicable here: {BATCHED} needs kernels = onednn")
    assert entry.not_applicable("keras", "onednn:avx512_core", cpu) == ""


def test_keras_rows_outside_the_measured_region_are_not_explained() -> None:
    passing = ("keras:onednn=off",)
    float64 = KERAS_F32.replace(dtype="float64")
    assert deviations.explain(row(float64, "keras", "mismatch"), PlantedWitness(float64, passing)) == ""
    nchw = KERAS_F32.replace(layout="NCHW")  # oneDNN off cannot run NCHW, so no toggle can witness it
    assert deviations.explain(row(nchw, "keras", "mismatch"), PlantedWitness(nchw, passing)) == ""


# --- on the real framework -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def variants() -> Iterator[witness.VariantRunner]:
    runner = witness.VariantRunner(timeout=120.0)
    yield runner
    runner.close()


def load_error(adapter: object, label: str) -> str:
    """Worker target: the error of loading `label` in a process whose TensorFlow is already imported ('' if none)."""
    try:
        adapters.load(label)
    except adapters.AdapterError as exc:
        return str(exc)
    return ""


@needs_keras
def test_worker_with_onednn_off_reports_the_setting_and_refuses_the_other() -> None:
    from refconv.worker import WorkerHandle

    handle = WorkerHandle("keras:onednn=off", load_timeout=300.0)
    try:
        info = handle.start()
        same = handle.call("test_keras_onednn:load_error", "keras:onednn=off", timeout=120.0)
        other = handle.call("test_keras_onednn:load_error", "keras:onednn=on", timeout=120.0)
        tf_other = handle.call("test_keras_onednn:load_error", "tf:onednn=on", timeout=120.0)
    finally:
        handle.close()
    assert info["settings"]["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert info["settings"]["onednn_in_force"] is False  # TensorFlow's own answer, not the variable's echo
    assert info["env"]["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert same == ""  # the setting TensorFlow already runs: nothing to refuse
    # TF read TF_ENABLE_ONEDNN_OPTS at import: rows labelled oneDNN on would have run with it off
    assert other.startswith("keras:onednn=on cannot take effect: TensorFlow is already imported in this process "
                            "with oneDNN off"), other
    assert tf_other.startswith("tf:onednn=on cannot take effect"), tf_other


@needs_keras
@pytest.mark.slow  # two workers import TensorFlow and Keras: about 25 s on a busy 2-core machine
def test_default_run_keras_row_is_explained_because_onednn_off_passes(variants: witness.VariantRunner) -> None:
    isa = variants.isa("keras", KERAS_F32)  # the kernels keras runs the case on here
    (entry,) = [d for d in deviations.load() if d.id == BATCHED]
    reason = entry.not_applicable("keras", isa, cpu_features())
    if reason:
        pytest.skip(reason)
    assert variants.compare("keras", KERAS_F32).outcome == "mismatch"
    assert variants.compare("keras:onednn=off", KERAS_F32).outcome == "pass"
    found = deviations.explain(row(KERAS_F32, "keras", "mismatch", isa, cpu_features()),
                               witness.CaseWitness(variants, KERAS_F32, "keras"))
    assert found == BATCHED


KERAS_TOGGLED = [d for d in deviations.load() if d.covers("keras") and d.toggle]


def test_the_three_tf_onednn_wrong_value_entries_cover_keras() -> None:
    assert {d.id for d in KERAS_TOGGLED} == {BATCHED, "tf_onednn_bf16_one_output_column_wrong_values",
                                             "tf_onednn_bf16_nan_inf_spread_left"}


@needs_keras
@pytest.mark.slow  # shares the two workers above
@pytest.mark.parametrize("entry", KERAS_TOGGLED, ids=lambda d: d.id)
def test_entry_examples_fail_in_keras_and_are_explained_by_the_toggle(entry: deviations.Deviation,
                                                                      variants: witness.VariantRunner) -> None:
    spec = entry.example_spec
    isa = variants.isa("keras", spec)
    reason = entry.not_applicable("keras", isa, cpu_features())
    if reason:
        pytest.skip(reason)
    comparison = variants.compare("keras", spec)
    assert comparison.outcome in entry.outcomes, comparison.message("keras", spec)
    case_witness = witness.CaseWitness(variants, spec, "keras")
    assert deviations.explain(row(spec, "keras", comparison.outcome, isa, cpu_features()), case_witness) == entry.id
