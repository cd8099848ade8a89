"""Known deviations: the data file parses, rows match exactly the documented behaviour, strict replay."""

from __future__ import annotations

import os

import pytest

from refconv import deviations
from refconv.errors import SpecError
from refconv.rows import case_columns
from refconv.spec import ConvSpec

SHORT_BY_ONE = ConvSpec(n=1, h=2, w=2, c_in=2, c_out=2, kh=3, kw=3, padding="VALID")  # output (1, 0, 0, 2)
SHORT_BY_FIVE = ConvSpec(n=1, h=2, w=3, c_in=2, c_out=3, kh=7, kw=7, padding="VALID")
SHORT_BY_TWO_STRIDE_2 = ConvSpec(n=1, h=1, w=4, c_in=1, c_out=1, kh=3, kw=1, strides=2, padding="VALID")


def row(spec: ConvSpec, adapter: str, outcome: str) -> dict:
    return {**case_columns(spec), "adapter": adapter, "outcome": outcome}


def test_every_entry_is_complete() -> None:
    entries = deviations.load()
    assert {d.id for d in entries} >= {
        "tf_valid_empty_output_raises", "tf_onednn_empty_output_wrong_shape",
        "torch_empty_output_raises", "torch_single_channel_ambiguous_strides_wrong_values",
    }
    for d in entries:
        assert d.upstream.startswith("https://github.com/"), d.id
        assert d.reason and d.outcomes and d.adapter
        assert d.example_spec.id == d.example  # the example parses as a case id


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


@pytest.mark.parametrize(("spec", "adapter", "outcome", "expected"), [
    (SHORT_BY_ONE, "tf", "wrong_shape", "tf_onednn_empty_output_wrong_shape"),
    (SHORT_BY_ONE, "tf:onednn=on", "raised", "tf_onednn_empty_output_wrong_shape"),
    (SHORT_BY_ONE, "tf:onednn=off", "wrong_shape", ""),  # oneDNN off is right here: no excuse
    (SHORT_BY_ONE.replace(dtype="float64"), "tf", "wrong_shape", ""),  # Eigen path, correct
    (SHORT_BY_FIVE, "tf", "raised", "tf_valid_empty_output_raises"),
    (SHORT_BY_FIVE, "tf:onednn=off", "raised", "tf_valid_empty_output_raises"),
    (SHORT_BY_TWO_STRIDE_2, "tf:onednn=off", "raised", ""),  # 2 short but stride 2: TF gives the empty output
    (SHORT_BY_ONE, "torch", "raised", "torch_empty_output_raises"),
    (SHORT_BY_ONE, "torch:threads=1", "raised", "torch_empty_output_raises"),
    (SHORT_BY_ONE, "torch", "mismatch", ""),
    (SHORT_BY_ONE, "tfx.conv:Mine", "raised", ""),  # a third party's path is never excused by tf's entries
    (ConvSpec(n=1, h=5, w=5, c_in=1, c_out=1, kh=3, kw=3), "torch", "raised", ""),  # non-empty output
])
def test_match(spec: ConvSpec, adapter: str, outcome: str, expected: str) -> None:
    assert deviations.match(row(spec, adapter, outcome)) == expected


def test_parse_rejects_malformed_entries() -> None:
    with pytest.raises(SpecError, match="known deviation 'bad': unknown keys \\['adaptor'\\]"):
        deviations.parse('[bad]\nadaptor = "tf"\noutcomes = ["raised"]\nreason = "r"\nupstream = "u"\nexample = "e"\n')
    with pytest.raises(SpecError, match="missing keys \\['example'\\]"):
        deviations.parse('[bad]\nadapter = "tf"\noutcomes = ["raised"]\nreason = "r"\nupstream = "u"\n')


def test_ranges_and_lists() -> None:
    (entry,) = deviations.parse(
        '[e]\nadapter = ["a", "b:*"]\noutcomes = ["raised"]\nreason = "r"\nupstream = "u"\n'
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


@pytest.mark.parametrize("label", ["tf", "torch"])
def test_entries_reproduce_on_this_stack(label: str) -> None:
    """Replay each entry's own example on the real framework: every entry still shows its behaviour."""
    pytest.importorskip({"tf": "tensorflow", "torch": "torch"}[label], reason=f"{label} is not installed")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from refconv.conformance.check import load_adapter, run

    adapter, _ = load_adapter(label)
    assert deviations.strict(lambda lab, spec: run(adapter, spec).outcome, [label]) == []
