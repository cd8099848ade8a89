"""Facts of a case that failure regions are written in: row columns, deviations' derived facts, relations.

`facts(row)` is what a region's conditions are evaluated against: the case columns of `refconv.rows`,
the derived facts of `refconv.deviations.derived` (short_by, same_slack, ...) and a few relations between
columns that a bug may need (sw_gt_sh, sh_gt_sw, depthwise, ...). A row, or a probe run on a fleet, adds the
hardware it ran on (`HARDWARE`: isa, cpu_features). `holds(facts, when)` applies a known deviation's `when`
form (a value, a list of values, or {min, max}).

>>> from refconv.spec import ConvSpec
>>> f = facts_of(ConvSpec(n=2, h=3, w=3, c_in=1, c_out=1, kh=1, kw=2, strides=(1, 2)))
>>> f["sw_gt_sh"], f["n"], f["out_w"]
(True, 2, 2)
"""

from __future__ import annotations

from typing import Any

from refconv.deviations import derived
from refconv.rows import case_columns
from refconv.spec import ConvSpec

# Columns a region may be written in, by kind; the learner of `characterize` splits on these.
NUMERIC = ("n", "h", "w", "c_in", "c_out", "kh", "kw", "sh", "sw", "dh", "dw", "groups", "out_h", "out_w",
           "pad_top", "pad_bottom", "pad_left", "pad_right", "K", "short_by", "same_slack")
CATEGORICAL = ("dtype", "layout", "padding", "activation")
BOOLEAN = ("bias", "empty_output", "sw_gt_sh", "sh_gt_sw", "stride_gt_kernel", "depthwise", "c_out_is_out_w")
# Row columns of the hardware a case ran on (refconv.hardware): present on a fleet's probes and on rows, never on
# a case alone, so a region names them only where they varied between the probes (a fleet's worker kinds).
HARDWARE = ("isa", "cpu_features")

# Degenerate facts that name a row-grouping signature (`group.group_rows`): (column, condition).
DEGENERATE: tuple[tuple[str, Any], ...] = (
    ("n", {"min": 2}), ("c_in", 1), ("c_out", 1), ("out_h", 1), ("out_w", 1), ("empty_output", True),
    ("sw_gt_sh", True), ("sh_gt_sw", True), ("short_by", {"min": 1}), ("same_slack", {"min": 1}),
    ("groups", {"min": 2}), ("depthwise", True), ("dh", {"min": 2}), ("dw", {"min": 2}), ("kh", 1), ("kw", 1),
)


def relations(row: dict[str, Any]) -> dict[str, Any]:
    """Relations between columns: sw_gt_sh, sh_gt_sw, stride_gt_kernel, depthwise; {} if columns are missing."""
    try:
        sh, sw, kh, kw = row["sh"], row["sw"], row["kh"], row["kw"]
        groups, c_in = row["groups"], row["c_in"]
    except KeyError:
        return {}
    return {
        "sw_gt_sh": sw > sh, "sh_gt_sw": sh > sw,
        "stride_gt_kernel": sh > kh or sw > kw,
        "depthwise": groups > 1 and groups == c_in,
    }


def facts(row: dict[str, Any]) -> dict[str, Any]:
    """A row's columns with its derived facts and relations (row values win on a name clash)."""
    return {**derived(row), **relations(row), **row}


def facts_of(spec: ConvSpec) -> dict[str, Any]:
    """The facts of a case (no adapter, no outcome)."""
    return facts(case_columns(spec))


def case_part(when: dict[str, Any]) -> dict[str, Any]:
    """The conditions on the case alone (the hardware ones dropped): what choosing a case can satisfy."""
    return {column: wanted for column, wanted in when.items() if column not in HARDWARE}


def _holds(value: Any, wanted: Any) -> bool:
    """One condition of a known deviation's `when` form (the same rule as refconv.deviations)."""
    if isinstance(wanted, dict):
        return value is not None and wanted.get("min", value) <= value <= wanted.get("max", value)
    if isinstance(wanted, list):
        return value in wanted
    return bool(value == wanted)


def holds(values: dict[str, Any], when: dict[str, Any]) -> bool:
    """Do all of `when`'s conditions hold on these facts (a known deviation's rule)?"""
    return all(_holds(values.get(column), wanted) for column, wanted in when.items())


def degenerate(values: dict[str, Any]) -> dict[str, Any]:
    """The degenerate facts that hold, as conditions: e.g. {'n': {'min': 2}, 'c_in': 1}."""
    return {column: wanted for column, wanted in DEGENERATE if holds(values, {column: wanted})}


def describe(when: dict[str, Any]) -> str:
    """Conditions in words: 'c_in = 1, n >= 2, sw_gt_sh'."""
    parts = []
    for column, wanted in when.items():
        if isinstance(wanted, dict):
            low, high = wanted.get("min"), wanted.get("max")
            if low is not None and high is not None:
                parts.append(f"{column} = {low}" if low == high else f"{low} <= {column} <= {high}")
            elif low is not None:
                parts.append(f"{column} >= {low}")
            elif high is not None:
                parts.append(f"{column} <= {high}")
        elif isinstance(wanted, list):
            parts.append(f"{column} in {{{', '.join(map(str, wanted))}}}")
        elif wanted is True:
            parts.append(column)
        elif wanted is False:
            parts.append(f"not {column}")
        else:
            parts.append(f"{column} = {wanted}")
    return ", ".join(parts) if parts else "any case"
