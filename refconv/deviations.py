"""Known deviations: reviewed data (refconv/data/known_deviations.toml), one entry per framework behaviour
that disagrees with the reference, each with a reason, an upstream link and an example case that shows it.
A row an entry explains keeps its outcome and gains `known_deviation = <entry id>`; nothing is hidden.

An entry's `when` holds row columns that must all hold: a value, a list of values, or a range
`{ min = a, max = b }`. Besides the columns of `refconv.rows`, conditions may use derived facts:

- `short_by`: how many pixels the padded input is short of the effective kernel, worst axis (0 if it fits);
- `short_strides`: the same in whole strides, max over axes of short_by_axis // stride;
- `short_over_stride`: max over axes of (short_by_axis - stride), for engines that size outputs with floor;
- `same_slack`: under SAME, the most pixels a stride larger than the kernel leaves unused on an axis,
  in - (out - 1) * s - k_eff (0 for other padding);
- `c_out_is_out_w`: c_out > 1 and c_out equals the output width (layout guessing from shapes);
- `sw_gt_sh`: the column stride is larger than the row stride (`sh_gt_sw` the other way round);
- `stride_gt_kernel`: a stride is larger than the kernel on its axis; `depthwise`: groups = c_in > 1.
An unknown key is an error at load, and so is an example that falls outside its own `when`.

An entry explains a failing row only when it predicts it:
- exact (no witness): every case its `when` covers fails that way, so a framework fix makes the
  conformance tests fail (strict);
- or it carries a witness checked on that very row: `model = "<name>"` (a function in
  `refconv.deviation_models` computing the framework's wrong answer; the row's output must match it within
  tolerance), or `toggle = "<key=value>"` (options set on the row's adapter, e.g. `onednn=off` turns `tf`
  into `tf:onednn=off`; that variant must pass the same case). A region alone never explains a failure.

>>> row = {"adapter": "torch", "outcome": "raised", "empty_output": True, "h": 2, "w": 2, "kh": 3, "kw": 3,
...        "dh": 1, "dw": 1, "sh": 1, "sw": 1, "pad_top": 0, "pad_bottom": 0, "pad_left": 0, "pad_right": 0}
>>> match(row)
'torch_empty_output_raises'
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Protocol

import numpy as np

from refconv.errors import SpecError
from refconv.hardware import HARDWARE_FACTS
from refconv.hardware import facts as hardware_facts
from refconv.spec import ConvSpec

_KEYS = {"adapter", "outcomes", "reason", "upstream", "when", "example", "model", "toggle", "measured"}
_REQUIRED = ("adapter", "outcomes", "reason", "upstream", "example")
# `when` keys that speak of the machine rather than the case: the row columns isa and cpu_features and the facts
# refconv.hardware derives from them. An entry whose hardware conditions do not hold is "not applicable here".
HARDWARE_KEYS = ("isa", "cpu_features") + HARDWARE_FACTS
DERIVED = ("short_by", "short_strides", "short_over_stride", "same_slack", "c_out_is_out_w", "sw_gt_sh",
           "sh_gt_sw", "stride_gt_kernel", "depthwise",  # the last three: relations `refconv hunt` may report
           "channels_per_group")  # max(c_in, c_out) / groups: 1 only when each group has one channel both ways


class Witness(Protocol):
    """What a witnessed entry is checked against: the case as the adapter ran it (refconv.witness.CaseWitness)."""

    spec: ConvSpec

    def inputs(self) -> tuple[Any, ...]:
        """The inputs (x, w, b) the adapter got."""
        ...

    def output(self) -> np.ndarray | None:
        """The adapter's output on them (None when it gave none)."""
        ...

    def passes(self, label: str) -> bool:
        """Does the adapter `label` pass the same case on the same inputs?"""
        ...


def derived(row: dict[str, Any]) -> dict[str, Any]:
    """Facts computed from a row's case columns (short_by, short_strides); {} if columns are missing."""
    try:
        axes = [
            (row["h"] + row["pad_top"] + row["pad_bottom"], (row["kh"] - 1) * row["dh"] + 1, row["sh"]),
            (row["w"] + row["pad_left"] + row["pad_right"], (row["kw"] - 1) * row["dw"] + 1, row["sw"]),
        ]
    except (KeyError, TypeError):
        return {}
    short = [max(k_eff - size, 0) for size, k_eff, _ in axes]
    strides = [stride for _, _, stride in axes]
    facts: dict[str, Any] = {
        "short_by": max(short),
        "short_strides": max(s // st for s, st in zip(short, strides, strict=True)),
        "short_over_stride": max(k_eff - size - st for size, k_eff, st in axes),
        "c_out_is_out_w": row.get("c_out", 0) > 1 and row.get("c_out") == row.get("out_w"),
        "same_slack": 0,
        "sw_gt_sh": row["sw"] > row["sh"],
        "sh_gt_sw": row["sh"] > row["sw"],
        "stride_gt_kernel": row["sh"] > row["kh"] or row["sw"] > row["kw"],
        "depthwise": row.get("groups", 1) > 1 and row.get("groups") == row.get("c_in"),
        "channels_per_group": max(row.get("c_in", 1), row.get("c_out", 1)) // max(row.get("groups", 1), 1),
    }
    if row.get("padding") == "SAME" and "out_h" in row and "out_w" in row:
        facts["same_slack"] = max(
            row["h"] - (row["out_h"] - 1) * row["sh"] - (row["kh"] - 1) * row["dh"] - 1,
            row["w"] - (row["out_w"] - 1) * row["sw"] - (row["kw"] - 1) * row["dw"] - 1,
        )
    return facts


def _holds(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return value is not None and wanted.get("min", value) <= value <= wanted.get("max", value)
    if isinstance(wanted, list):
        return value in wanted
    return bool(value == wanted)


def toggled(label: str, toggle: str) -> str:
    """The adapter label with a toggle's options set: toggled('tf:onednn=on', 'onednn=off') == 'tf:onednn=off'."""
    import adapters  # the registry only: importing it loads no framework

    ref = adapters.parse(label)  # a pinned version stays pinned: tf@2.19.1 -> tf@2.19.1:onednn=off
    return adapters.AdapterRef(ref.name, {**ref.options, **adapters.parse("x:" + toggle).options}, ref.version).label


@dataclass(frozen=True)
class Deviation:
    """One reviewed entry: which adapters, which outcomes, under which conditions, why, and its witness."""

    id: str
    adapter: tuple[str, ...]  # fnmatch patterns over the adapter label, e.g. ("tf", "tf:onednn=on")
    outcomes: tuple[str, ...]
    reason: str
    upstream: str
    example: str  # a case id that shows the deviation, replayed by `strict`
    when: dict[str, Any] = field(default_factory=dict)
    model: str = ""  # a refconv.deviation_models name: the row's output must match it
    toggle: str = ""  # adapter options under which the row's case must pass, e.g. "onednn=off"
    measured: str = ""  # on which CPU and kernels the entry was measured (isa levels, CPU), in words

    @property
    def exact(self) -> bool:
        """No witness: every case of the region fails this way."""
        return not (self.model or self.toggle)

    def matches(self, row: dict[str, Any]) -> bool:
        """Do the row's adapter, outcome and every condition fall inside this entry (witness not checked)?"""
        # the outcome first: a set lookup that rejects most rows before the label patterns and conditions
        return row.get("outcome") in self.outcomes and self.covers(str(row.get("adapter", ""))) and self.applies(row)

    def applies(self, row: dict[str, Any]) -> bool:
        """Do the case and hardware conditions hold, whatever the adapter and outcome?"""
        return self.applies_case(row) and self.hardware_holds(row.get("isa"), row.get("cpu_features"))

    def applies_case(self, row: dict[str, Any]) -> bool:
        """Do the case conditions hold (the hardware ones not asked)?"""
        # a case alone (no relation) and rows stored before ops existed: a forward conv, not a relation
        facts = {"op": "conv2d", "relation": "", **derived(row), **row}
        return all(_holds(facts.get(column), wanted) for column, wanted in self.when.items()
                   if column not in HARDWARE_KEYS)

    @property
    def hardware(self) -> dict[str, Any]:
        """The entry's hardware conditions ({} : it holds on every machine and kernel)."""
        return {key: wanted for key, wanted in self.when.items() if key in HARDWARE_KEYS}

    def hardware_holds(self, isa: Any, cpu_features: Any) -> bool:
        """Do the hardware conditions hold for kernels `isa` on a CPU with `cpu_features` (row columns)?"""
        if not self.hardware:
            return True
        facts = {"isa": isa, "cpu_features": cpu_features, **hardware_facts(isa, cpu_features)}
        return all(_holds(facts.get(key), wanted) for key, wanted in self.hardware.items())

    def describe_hardware(self) -> str:
        """The hardware conditions in words, e.g. 'onednn_isa in avx512_core, avx512_core_vnni'; '' if none."""
        parts = []
        for key, wanted in self.hardware.items():
            if isinstance(wanted, list):
                parts.append(f"{key} in {', '.join(map(str, wanted))}")
            elif isinstance(wanted, dict):
                parts.append(f"{key} {wanted.get('min', '')}..{wanted.get('max', '')}")
            else:
                parts.append(f"{key} = {wanted}")
        return "; ".join(parts)

    def covers(self, label: str) -> bool:
        """Does the entry name this adapter label (a pinned version, tf@2.19.1, as its engine: tf)?"""
        head, sep, options = label.partition(":")
        label = head.partition("@")[0] + sep + options
        return any(fnmatch.fnmatchcase(label, pattern) for pattern in self.adapter)

    def witnessed(self, label: str, witness: Witness | None) -> bool:
        """Does the witness hold on the case (always for an exact entry, never without a witness)?"""
        if self.exact:
            return True
        if witness is None:
            return False
        if self.model:
            return self.model_matches(witness)
        return witness.passes(toggled(label, self.toggle))

    def model_matches(self, witness: Witness) -> bool:
        """Is the adapter's output the model's wrong answer, within the usual tolerance?"""
        from refconv.compare import compare
        from refconv.deviation_models import predict

        actual = witness.output()
        if actual is None:
            return False
        wrong, bound = predict(self.model, witness.spec, witness.inputs())
        return compare(witness.spec, wrong, bound, actual).outcome == "pass"

    def explains(self, row: dict[str, Any], witness: Witness | None = None) -> bool:
        """Inside the entry and, for a witnessed entry, its witness holds on this row."""
        return self.matches(row) and self.witnessed(str(row["adapter"]), witness)

    def describe_witness(self) -> str:
        """'exact', 'model keras_bias_on_width' or 'toggle onednn=off'."""
        return f"model {self.model}" if self.model else f"toggle {self.toggle}" if self.toggle else "exact"

    @property
    def example_spec(self) -> ConvSpec:
        return ConvSpec.from_id(self.example)


def _check_when(entry_id: str, when: Any) -> dict[str, Any]:
    from refconv.rows import COLUMNS

    if not isinstance(when, dict):
        raise SpecError(f"known deviation {entry_id!r}: when must be a table, got {when!r}")
    unknown = sorted(set(when) - set(COLUMNS) - set(DERIVED) - set(HARDWARE_KEYS))
    if unknown:
        raise SpecError(f"known deviation {entry_id!r}: unknown when keys {unknown}; use row columns "
                        f"(refconv.rows.COLUMNS), derived facts {list(DERIVED)} or hardware facts "
                        f"{list(HARDWARE_FACTS)}")
    for key, wanted in when.items():
        if isinstance(wanted, dict) and (not wanted or set(wanted) - {"min", "max"}):
            raise SpecError(f"known deviation {entry_id!r}: when.{key} range takes min and max, got {wanted}")
    return dict(when)


def _check_witness(entry_id: str, entry: dict[str, Any]) -> tuple[str, str]:
    from refconv.deviation_models import MODELS

    model, toggle = str(entry.get("model", "")), str(entry.get("toggle", ""))
    if model and toggle:
        raise SpecError(f"known deviation {entry_id!r}: give one witness, model or toggle, not both")
    if model and model not in MODELS:
        raise SpecError(f"known deviation {entry_id!r}: unknown model {model!r}; available: {', '.join(MODELS)}")
    if toggle and not all(k and sep and v for k, sep, v in (p.partition("=") for p in toggle.split(":"))):
        raise SpecError(f"known deviation {entry_id!r}: toggle must be key=value[:key=value], got {toggle!r}")
    return model, toggle


def _entry(entry_id: str, entry: dict[str, Any]) -> Deviation:
    if "exact" in entry:  # the old `exact = false` excused a region without a witness
        raise SpecError(f"known deviation {entry_id!r}: 'exact' is gone; an inexact entry needs a witness "
                        f"(model = ... or toggle = ...)")
    unknown = set(entry) - _KEYS
    missing = [k for k in _REQUIRED if k not in entry]
    if unknown or missing:
        raise SpecError(f"known deviation {entry_id!r}: unknown keys {sorted(unknown)}, missing keys {missing}")
    adapter = entry["adapter"]
    model, toggle = _check_witness(entry_id, entry)
    deviation = Deviation(
        id=entry_id, adapter=tuple(adapter) if isinstance(adapter, list) else (adapter,),
        outcomes=tuple(entry["outcomes"]), reason=entry["reason"], upstream=entry["upstream"],
        example=entry["example"], when=_check_when(entry_id, entry.get("when", {})), model=model, toggle=toggle,
        measured=str(entry.get("measured", "")),
    )
    _check_example(deviation)
    return deviation


def _check_example(deviation: Deviation) -> None:
    """The entry's own example must parse and fall inside its `when`."""
    from refconv.rows import case_columns

    try:
        spec = deviation.example_spec
    except (SpecError, ValueError) as exc:
        raise SpecError(f"known deviation {deviation.id!r}: example {deviation.example!r} is not a case id: "
                        f"{exc}") from None
    if not deviation.applies_case(case_columns(spec)):
        raise SpecError(f"known deviation {deviation.id!r}: example {deviation.example} falls outside its when "
                        f"{deviation.when}")


def parse(text: str) -> tuple[Deviation, ...]:
    """Entries from TOML text; a malformed entry raises SpecError naming it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # the file's syntax: one line naming where, not a parser traceback
        raise SpecError(f"known deviations file is not valid TOML: {exc}") from None
    return tuple(_entry(entry_id, entry) for entry_id, entry in data.items())


@cache
def load() -> tuple[Deviation, ...]:
    """The reviewed entries shipped with refconv."""
    return parse(resources.files("refconv.data").joinpath("known_deviations.toml").read_text())


def find(row: dict[str, Any], entries: Iterable[Deviation] | None = None,
         witness: Witness | None = None) -> Deviation | None:
    """The first entry that explains this row (a witnessed one only if `witness` holds), or None."""
    for deviation in load() if entries is None else entries:
        if deviation.explains(row, witness):
            return deviation
    return None


def explain(row: dict[str, Any], witness: Witness | None = None, entries: Iterable[Deviation] | None = None) -> str:
    """The id of the first entry that explains this row, or ''; without a witness only exact entries can."""
    found = find(row, entries, witness)
    return found.id if found else ""


def match(row: dict[str, Any]) -> str:
    """The id of the first exact entry that explains this row, or '' (no witness: see `explain`)."""
    return explain(row)


def expected_for(label: str, row: dict[str, Any], entries: Iterable[Deviation] | None = None) -> Deviation | None:
    """The entry that predicts a deviation for this adapter on this case (outcome not yet known), or None."""
    for deviation in load() if entries is None else entries:
        if deviation.covers(label) and deviation.applies(row):
            return deviation
    return None


def strict(run: Callable[[str, ConvSpec], str], labels: Iterable[str],
           entries: Iterable[Deviation] | None = None,
           isolated: Callable[[str, ConvSpec], str] | None = None) -> list[str]:
    """Replay each entry's example for every label it covers; lines for entries that no longer reproduce.

    `run(label, spec)` returns the outcome of one case ('pass', 'raised', ...). An empty list means every
    entry still shows the behaviour it documents, so a framework fix shows up as a line here. `isolated`, when
    given, replays the entries that document a crash or a hang instead (an in-process `run` would die with them).
    """
    stale = []
    for deviation in load() if entries is None else entries:
        replay = isolated if isolated and set(deviation.outcomes) & {"crashed", "timeout"} else run
        for label in labels:
            if not deviation.covers(label):
                continue
            outcome = replay(label, deviation.example_spec)
            if outcome not in deviation.outcomes:
                stale.append(f"{deviation.id}: {label} gave {outcome!r} on {deviation.example}, "
                             f"expected one of {list(deviation.outcomes)}; the entry no longer reproduces")
    return stale
