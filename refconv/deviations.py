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

A `when` may also name the machine (HARDWARE_KEYS, docs/hardware.md): the row columns `isa` (the kernels that ran
the case, e.g. "onednn:avx512_core_amx", "eigen", "aten:avx2") and `cpu_features`, and the facts
`refconv.hardware.facts` derives from them: `kernels` (the family: "onednn", "eigen", "aten" ...), `onednn_isa`
(the oneDNN level, "" for other kernels), `x86_level` (4 for x86-64-v4) and `cpu_<flag>` (`cpu_avx512f`, `cpu_amx`
...). A row explains or is predicted only where they hold on its own `isa` and `cpu_features`; an entry whose
hardware conditions hold for no row of its adapters here is *not applicable here* (`status`, `not_applicable`):
its tests skip with that reason rather than fail or pass. Every entry says in `measured` (required) on which CPU,
kernels and levels it was measured, with counts and a date; its `when` is no wider than that.

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

_KEYS = {"adapter", "outcomes", "reason", "upstream", "when", "example", "model", "toggle", "measured", "replay"}
REPLAYS = ("fresh",)  # `replay = "fresh"`: the example is replayed in a fresh worker process (see Deviation.replay)
_REQUIRED = ("adapter", "outcomes", "reason", "upstream", "example", "measured")
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
    options = {**ref.options, **adapters.parse("x:" + toggle).options}
    if options.get("onednn") == "off":  # isa caps oneDNN: with it off the cap means nothing (and is refused)
        options.pop("isa", None)
    return adapters.AdapterRef(ref.name, options, ref.version).label


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
    measured: str = ""  # on which CPU and kernels the entry was measured (isa levels, counts, date), in words
    replay: str = ""  # "fresh": its example shows only in a fresh process (an output of uninitialised memory)

    @property
    def isolated(self) -> bool:
        """Is its example replayed in a fresh worker: it documents a crash or a hang, or says replay = "fresh"?"""
        return bool(set(self.outcomes) & {"crashed", "timeout"}) or self.replay == "fresh"

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

    def not_applicable(self, label: str, isa: Any, cpu_features: Any) -> str:
        """'' where the hardware conditions hold for `label` running kernels `isa` on a CPU with `cpu_features`;
        else the reason its tests skip: 'not applicable here: <id> needs <conditions>; <label> runs <isa> on <cpu>'.
        """
        if self.hardware_holds(isa, cpu_features):
            return ""
        return (f"not applicable here: {self.id} needs {self.describe_hardware()}; {label} runs "
                f"{isa or 'unreported kernels (its adapter has no isa())'} on {cpu_features or 'an unknown CPU'}")

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


def _check_replay(entry_id: str, replay: Any) -> str:
    if replay and replay not in REPLAYS:
        raise SpecError(f"known deviation {entry_id!r}: replay must be one of {list(REPLAYS)}, got {replay!r}")
    return str(replay)


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
        measured=str(entry.get("measured", "")), replay=_check_replay(entry_id, entry.get("replay", "")),
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


def get(dev_id: Any) -> Deviation | None:
    """The shipped entry of that id (None for '' or an unknown id, or when the data file cannot be read)."""
    if not dev_id:
        return None
    try:
        return next((d for d in load() if d.id == dev_id), None)
    except SpecError:
        return None


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


def expected_all(label: str, row: dict[str, Any], entries: Iterable[Deviation] | None = None) -> list[Deviation]:
    """Every entry that predicts a deviation for this adapter on this case (case and hardware), in file order."""
    return [d for d in (load() if entries is None else entries) if d.covers(label) and d.applies(row)]


def strict(run: Callable[[str, ConvSpec], str], labels: Iterable[str],
           entries: Iterable[Deviation] | None = None,
           isolated: Callable[[str, ConvSpec], str] | None = None,
           isa: Callable[[str, ConvSpec], str] | None = None,
           skipped: list[str] | None = None) -> list[str]:
    """Replay each entry's example for every label it covers; lines for entries that no longer reproduce.

    `run(label, spec)` returns the outcome of one case ('pass', 'raised', ...). An empty list means every
    entry still shows the behaviour it documents, so a framework fix shows up as a line here. `isolated`, when
    given, replays the entries that document a crash or a hang instead (an in-process `run` would die with them),
    and those that say replay = "fresh" (an output of uninitialised memory shows in a fresh process, while one that
    has run other cases may hand back a zeroed buffer): `isolated` should run the case in a new worker process.
    `isa(label, spec)`, when given, names the kernels the label runs the example on: an entry whose hardware
    conditions do not hold there (on this machine's `refconv.hardware.cpu_features()`) is not replayed, and its
    'not applicable here: ...' line goes to `skipped` (when given), as does an example the label declines here
    ('unsupported'). An entry that applies and no longer reproduces is always a line: the "fixed here?" signal.
    """
    from refconv.hardware import cpu_features

    stale = []
    for deviation in load() if entries is None else entries:
        replay = isolated if isolated and deviation.isolated else run
        for label in labels:
            if not deviation.covers(label):
                continue
            if isa is not None and deviation.hardware:
                reason = deviation.not_applicable(label, isa(label, deviation.example_spec), cpu_features())
                if reason:
                    if skipped is not None:
                        skipped.append(reason)
                    continue
            outcome = replay(label, deviation.example_spec)
            if outcome == "unsupported" and "unsupported" not in deviation.outcomes:  # declined: not shown, not fixed
                if skipped is not None:
                    skipped.append(f"{label} declines {deviation.id}'s example {deviation.example} here")
                continue
            if outcome not in deviation.outcomes:
                stale.append(f"{deviation.id}: {label} gave {outcome!r} on {deviation.example}, "
                             f"expected one of {list(deviation.outcomes)}; the entry no longer reproduces")
    return stale


# --- an entry's standing in a run: what the report shows beside each entry --------------------------------

APPLIED = "applied"
NOT_APPLICABLE = "not applicable here"
FIXED_HERE = "fixed here?"
NOT_EXERCISED = "not exercised"
STATUSES = (APPLIED, FIXED_HERE, NOT_APPLICABLE, NOT_EXERCISED)


@dataclass(frozen=True)
class EntryStatus:
    """An entry over a run's rows: its status and the counts behind it."""

    status: str  # one of STATUSES
    explained: int  # rows whose known_deviation is this entry
    adapter_rows: int  # rows of the adapters it names
    hardware_rows: int  # ... on which its hardware conditions hold
    region_rows: int  # ... inside its whole `when` (case and hardware): where it predicts the deviation
    kernels: tuple[str, ...]  # the distinct `isa` values of its adapters' rows, for the words below

    def describe(self, entry: Deviation) -> str:
        """One line for the report, e.g. 'fixed here?: 12 rows inside its when, none shows it'."""
        if self.status == APPLIED:
            return f"{APPLIED}: explains {self.explained} row(s)"
        if self.status == FIXED_HERE:
            partial = "" if entry.exact else " (data-dependent: it fails on part of its region)"
            return (f"{FIXED_HERE}: {self.region_rows} row(s) inside its when (hardware included), none shows "
                    f"it{partial}; rerun its example, then narrow or remove the entry")
        if self.status == NOT_APPLICABLE:
            ran = ", ".join(k or "unreported kernels" for k in self.kernels) or "no kernels"
            return f"{NOT_APPLICABLE}: needs {entry.describe_hardware()}; its adapters ran {ran}"
        return f"{NOT_EXERCISED}: no row of its adapters inside its when"


def classify(entry: Deviation, rows: Iterable[dict[str, Any]]) -> EntryStatus:
    """The entry's standing over a run's rows (dicts with adapter, outcome, known_deviation, isa, cpu_features and
    the case columns), first that holds of:

    - 'applied': some row's `known_deviation` is this entry;
    - 'fixed here?': rows of its adapters fall inside its whole `when`, case and hardware, and none shows it
      (its example should be rerun: the framework may have fixed it on these kernels);
    - 'not applicable here': it has hardware conditions and they hold on no row of its adapters;
    - 'not exercised': otherwise (no row of its adapters, or none inside its case region).
    """
    explained = adapter_rows = hardware_rows = region_rows = 0
    kernels: dict[str, None] = {}
    for row in rows:
        if row.get("known_deviation") == entry.id:
            explained += 1
        if not entry.covers(str(row.get("adapter", ""))):
            continue
        adapter_rows += 1
        kernels[str(row.get("isa") or "")] = None
        if not entry.hardware_holds(row.get("isa"), row.get("cpu_features")):
            continue
        hardware_rows += 1
        if entry.applies_case(row):
            region_rows += 1
    if explained:
        status = APPLIED
    elif region_rows:
        status = FIXED_HERE
    elif entry.hardware and adapter_rows and not hardware_rows:
        status = NOT_APPLICABLE
    else:
        status = NOT_EXERCISED
    return EntryStatus(status, explained, adapter_rows, hardware_rows, region_rows, tuple(kernels))


def status(entry: Deviation, rows: Iterable[dict[str, Any]]) -> str:
    """'applied', 'fixed here?', 'not applicable here' or 'not exercised': see `classify` (which also counts)."""
    return classify(entry, rows).status
