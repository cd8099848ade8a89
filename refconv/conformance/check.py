"""One (case, adapter) conformance check, shared by the pytest plugin's tests: outcome, row and verdict.

Nothing here imports pytest; `verdict` says what the test should do and with which message.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from adapters.base import Unsupported
from refconv import deviations
from refconv.compare import Comparison, compare
from refconv.inputs import make_inputs
from refconv.padding import output_shape
from refconv.reference import for_spec
from refconv.rows import case_columns
from refconv.spec import LAYOUTS, ConvSpec


@dataclass(frozen=True)
class Verdict:
    """What a test does with one outcome: 'pass', 'fail', 'skip' or 'xfail', and the message to show."""

    action: str
    message: str
    comparison: Comparison | None = None


@cache
def load_adapter(label: str) -> tuple[Any, str]:
    """(adapter or None, reason it is unavailable); cached per process, so xdist workers load their own."""
    import adapters

    reason = adapters.unavailable_reason(label)
    if reason:
        return None, f"{label}: {reason}"
    return adapters.load(label), ""


def run(adapter: Any, spec: ConvSpec, inputs: tuple[Any, Any, Any] | None = None) -> Comparison:
    """Call the adapter on the case's inputs (seeded unless given) and compare with the reference."""
    x, w, b = make_inputs(spec) if inputs is None else inputs
    expected, bound = for_spec(spec, x, w, b)
    try:
        actual = adapter.conv2d(x, w, b, spec)
    except Unsupported as exc:
        return Comparison("unsupported", output_shape(spec), None, error=str(exc))
    except Exception as exc:  # the framework's own error is the finding; keep its first line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return Comparison("raised", output_shape(spec), None, error=f"{type(exc).__name__}: {first}")
    return compare(spec, expected, bound, actual)


def repro(label: str, spec: ConvSpec) -> str:
    """The one command that reproduces a (case, adapter) result."""
    return f"refconv run --cases {spec.id} --adapters {label}"


def _fail_text(label: str, spec: ConvSpec, comparison: Comparison) -> str:
    return (f"{comparison.message(label, spec)}\n  case: {spec.describe()}\n  reproduce: {repro(label, spec)}")


def verdict(label: str, spec: ConvSpec, comparison: Comparison) -> Verdict:
    """Pass, fail, or a known deviation (xfail); a known deviation that no longer shows is a failure."""
    row = {**case_columns(spec), "adapter": label, "outcome": comparison.outcome}
    known = deviations.expected_for(label, row)
    if known is None:
        if comparison.outcome == "pass":
            return Verdict("pass", comparison.message(label, spec), comparison)
        return Verdict("fail", _fail_text(label, spec, comparison), comparison)
    if comparison.outcome == "pass" and not known.exact:  # a data-dependent bug that spared this case
        return Verdict("pass", comparison.message(label, spec), comparison)
    if comparison.outcome in known.outcomes:
        return Verdict("xfail", f"known deviation {known.id}: {known.reason} ({known.upstream}) "
                                f"[{comparison.outcome}: {comparison.error or comparison.message(label, spec)}]",
                       comparison)
    return Verdict("fail", f"known deviation {known.id} predicted {list(known.outcomes)} but got "
                           f"{comparison.outcome!r}: the entry no longer reproduces here (strict); narrow or remove "
                           f"it in refconv/data/known_deviations.toml\n{_fail_text(label, spec, comparison)}",
                   comparison)


def check(label: str, adapter: Any, spec: ConvSpec, inputs: tuple[Any, Any, Any] | None = None) -> Verdict:
    """supports() first (a reason means skip), then run and judge."""
    reason = adapter.supports(spec)
    if reason:
        return Verdict("skip", f"{label} does not support {spec.id}: {reason}")
    comparison = run(adapter, spec, inputs)
    if comparison.outcome == "unsupported":
        return Verdict("skip", f"{label} declined {spec.id} at call time: {comparison.error}", comparison)
    return verdict(label, spec, comparison)


def known_wrong_values(label: str, spec: ConvSpec) -> deviations.Deviation | None:
    """A reviewed wrong-values deviation of this adapter on the case in any layout, or None.

    Metamorphic relations run a case in other layouts and shapes too, so a relation that breaks on such a
    case is the deviation showing through, reported as known rather than as a new failure.
    """
    for layout in LAYOUTS:
        twin = spec.replace(layout=layout)
        found = deviations.find({**case_columns(twin), "adapter": label, "outcome": "mismatch"})
        if found is not None:
            return found
    return None
