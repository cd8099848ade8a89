"""Known deviations: reviewed data (refconv/data/known_deviations.toml), one entry per framework behaviour
that disagrees with the reference, each with a reason, an upstream link and an example case that shows it.
A matching row keeps its outcome and gains `known_deviation = <entry id>`; nothing is hidden.

An entry's `when` holds row columns that must all hold: a value, a list of values, or a range
`{ min = a, max = b }`. Besides the columns of `refconv.rows`, conditions may use derived facts:

- `short_by`: how many pixels the padded input is short of the effective kernel, worst axis (0 if it fits);
- `short_strides`: the same in whole strides, max over axes of short_by_axis // stride;
- `short_over_stride`: max over axes of (short_by_axis - stride), for engines that size outputs with floor;
- `same_slack`: under SAME, the most pixels a stride larger than the kernel leaves unused on an axis,
  in - (out - 1) * s - k_eff (0 for other padding);
- `c_out_is_out_w`: c_out > 1 and c_out equals the output width (layout guessing from shapes).

An entry is `exact` (the default) when its conditions pin the behaviour down: every matching case must
show the deviation, so a framework fix makes those tests fail (strict). A data-dependent bug that the
row's columns cannot predict sets `exact = false`: matching cases that pass are passes, and strictness
comes from replaying the entry's example (`strict`).

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
from typing import Any

from refconv.errors import SpecError
from refconv.spec import ConvSpec

_KEYS = {"adapter", "outcomes", "reason", "upstream", "when", "example", "exact"}
_REQUIRED = ("adapter", "outcomes", "reason", "upstream", "example")


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


@dataclass(frozen=True)
class Deviation:
    """One reviewed entry: which adapters, which outcomes, under which conditions, and why."""

    id: str
    adapter: tuple[str, ...]  # fnmatch patterns over the adapter label, e.g. ("tf", "tf:onednn=on")
    outcomes: tuple[str, ...]
    reason: str
    upstream: str
    example: str  # a case id that shows the deviation, replayed by `strict`
    when: dict[str, Any] = field(default_factory=dict)
    exact: bool = True  # False: the conditions only narrow a data-dependent bug; matching passes stay passes

    def matches(self, row: dict[str, Any]) -> bool:
        """Does this entry explain the row (adapter, outcome and every condition)?"""
        label = str(row.get("adapter", ""))
        if not any(fnmatch.fnmatchcase(label, pattern) for pattern in self.adapter):
            return False
        return row.get("outcome") in self.outcomes and self.applies(row)

    def applies(self, row: dict[str, Any]) -> bool:
        """Do the case conditions hold, whatever the adapter and outcome?"""
        facts = {**derived(row), **row}
        return all(_holds(facts.get(column), wanted) for column, wanted in self.when.items())

    def covers(self, label: str) -> bool:
        """Does the entry name this adapter label?"""
        return any(fnmatch.fnmatchcase(label, pattern) for pattern in self.adapter)

    @property
    def example_spec(self) -> ConvSpec:
        return ConvSpec.from_id(self.example)


def _entry(entry_id: str, entry: dict[str, Any]) -> Deviation:
    unknown = set(entry) - _KEYS
    missing = [k for k in _REQUIRED if k not in entry]
    if unknown or missing:
        raise SpecError(f"known deviation {entry_id!r}: unknown keys {sorted(unknown)}, missing keys {missing}")
    adapter = entry["adapter"]
    return Deviation(
        id=entry_id, adapter=tuple(adapter) if isinstance(adapter, list) else (adapter,),
        outcomes=tuple(entry["outcomes"]), reason=entry["reason"], upstream=entry["upstream"],
        example=entry["example"], when=dict(entry.get("when", {})), exact=bool(entry.get("exact", True)),
    )


def parse(text: str) -> tuple[Deviation, ...]:
    """Entries from TOML text; a malformed entry raises SpecError naming it."""
    return tuple(_entry(entry_id, entry) for entry_id, entry in tomllib.loads(text).items())


@cache
def load() -> tuple[Deviation, ...]:
    """The reviewed entries shipped with refconv."""
    return parse(resources.files("refconv.data").joinpath("known_deviations.toml").read_text())


def find(row: dict[str, Any], entries: Iterable[Deviation] | None = None) -> Deviation | None:
    """The first entry that explains this row, or None."""
    for deviation in load() if entries is None else entries:
        if deviation.matches(row):
            return deviation
    return None


def match(row: dict[str, Any]) -> str:
    """The id of the first known deviation that explains this row, or ''."""
    found = find(row)
    return found.id if found else ""


def expected_for(label: str, row: dict[str, Any], entries: Iterable[Deviation] | None = None) -> Deviation | None:
    """The entry that predicts a deviation for this adapter on this case (outcome not yet known), or None."""
    for deviation in load() if entries is None else entries:
        if deviation.covers(label) and deviation.applies(row):
            return deviation
    return None


def strict(run: Callable[[str, ConvSpec], str], labels: Iterable[str],
           entries: Iterable[Deviation] | None = None) -> list[str]:
    """Replay each entry's example for every label it covers; lines for entries that no longer reproduce.

    `run(label, spec)` returns the outcome of one case ('pass', 'raised', ...). An empty list means every
    entry still shows the behaviour it documents, so a framework fix shows up as a line here.
    """
    stale = []
    for deviation in load() if entries is None else entries:
        for label in labels:
            if not deviation.covers(label):
                continue
            outcome = run(label, deviation.example_spec)
            if outcome not in deviation.outcomes:
                stale.append(f"{deviation.id}: {label} gave {outcome!r} on {deviation.example}, "
                             f"expected one of {list(deviation.outcomes)}; the entry no longer reproduces")
    return stale
