"""One (case, adapter) conformance check, shared by the pytest plugin's tests: outcome, row and verdict.

Nothing here imports pytest; `verdict` says what the test should do and with which message.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from adapters.base import Unsupported
from refconv import deviations, hardware, ops, serve, witness
from refconv.compare import Comparison, compare
from refconv.rows import case_columns
from refconv.spec import ConvSpec


@dataclass(frozen=True)
class Verdict:
    """What a test does with one outcome: 'pass', 'fail', 'skip' or 'xfail', and the message to show."""

    action: str
    message: str
    comparison: Comparison | None = None


_LOADED: dict[str, Any] = {}  # the adapters load_adapter loaded in this process, by label


@cache
def load_adapter(label: str) -> tuple[Any, str]:
    """(adapter or None, reason it is unavailable); cached per process, so xdist workers load their own."""
    import adapters

    reason = adapters.unavailable_reason(label)
    if reason:
        return None, f"{label}: {reason}"
    _LOADED[label] = adapters.load(label)
    return _LOADED[label], ""


def run(adapter: Any, spec: ConvSpec, inputs: tuple[Any, ...] | None = None) -> Comparison:
    """Call the adapter's method for the case's op on its inputs (seeded unless given); compare with the reference."""
    values = ops.inputs(spec) if inputs is None else inputs
    expected, bound = ops.reference(spec, values)
    try:
        call, fetch = ops.bind(adapter, spec, values)
        actual = fetch(call())
    except Unsupported as exc:
        return Comparison("unsupported", expected.shape, None, error=str(exc))
    except Exception as exc:  # the framework's own error is the finding; keep its first line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return Comparison("raised", expected.shape, None, error=f"{type(exc).__name__}: {first}")
    return compare(spec, expected, bound, actual)


def repro(label: str, spec: ConvSpec) -> str:
    """The one command that reproduces a (case, adapter) result."""
    return f"refconv run --cases {spec.id} --adapters {label}"


def _fail_text(label: str, spec: ConvSpec, comparison: Comparison) -> str:
    return (f"{comparison.message(label, spec)}\n  case: {spec.describe()}\n  reproduce: {repro(label, spec)}")


def case_row(label: str, spec: ConvSpec, outcome: str, isa: str = "") -> dict[str, Any]:
    """The row a verdict judges: the case columns, adapter, outcome, and the kernels and CPU that ran it."""
    return {**case_columns(spec), "adapter": label, "outcome": outcome, "isa": isa,
            "cpu_features": hardware.cpu_features()}


def adapter_isa(adapter: Any, spec: ConvSpec) -> str:
    """The kernels the adapter runs the case on (its `isa(spec)`; '' when it has no such method)."""
    return serve.case_isa(adapter, spec)


def _not_applicable_note(label: str, row: dict[str, Any]) -> str:
    """The entries whose case region holds this row but whose hardware conditions do not: said in a failure."""
    notes = [d.not_applicable(label, row["isa"], row["cpu_features"]) for d in deviations.load()
             if d.covers(label) and d.hardware and d.applies_case(row)]
    notes = [n for n in notes if n]
    return "".join(f"\n  (inside the case region of a known deviation, but {n})" for n in notes)


def verdict(label: str, spec: ConvSpec, comparison: Comparison, witness: deviations.Witness | None = None,
            isa: str = "") -> Verdict:
    """Pass, fail, or a known deviation (xfail); a known deviation that no longer shows is a failure.

    A witnessed entry (model or toggle) excuses a failure only where `witness` holds on this case. `isa` is the
    kernels the adapter ran the case on (its `isa(spec)`): an entry whose hardware conditions do not hold on
    them and this CPU predicts nothing here (not applicable), so it neither excuses a failure nor expects one.
    """
    row = case_row(label, spec, comparison.outcome, isa)
    predicted = deviations.expected_all(label, row)  # entries may overlap (a structural raise and a kernel's)
    if not predicted:
        if comparison.outcome == "pass":
            return Verdict("pass", comparison.message(label, spec), comparison)
        return Verdict("fail", _fail_text(label, spec, comparison) + _not_applicable_note(label, row), comparison)
    for known in predicted:
        if comparison.outcome in known.outcomes and known.witnessed(label, witness):
            return Verdict("xfail", f"known deviation {known.id} ({known.describe_witness()}): {known.reason} "
                                    f"({known.upstream}) "
                                    f"[{comparison.outcome}: {comparison.error or comparison.message(label, spec)}]",
                           comparison)
    exact = [d for d in predicted if d.exact]
    if comparison.outcome == "pass" and not exact:  # a data-dependent bug that spared this case
        return Verdict("pass", comparison.message(label, spec), comparison)
    if not exact:
        known = predicted[0]
        return Verdict("fail", f"inside known deviation {known.id}'s region, but it does not explain this "
                               f"{comparison.outcome!r} (witness: {known.describe_witness()})\n"
                               f"{_fail_text(label, spec, comparison)}" + _not_applicable_note(label, row), comparison)
    known = exact[0]
    return Verdict("fail", f"known deviation {known.id} predicted {list(known.outcomes)} but got "
                           f"{comparison.outcome!r}: the entry no longer reproduces here (strict; fixed here? "
                           f"{label} ran {isa or 'unreported kernels'}); narrow or remove it in "
                           f"refconv/data/known_deviations.toml\n{_fail_text(label, spec, comparison)}",
                   comparison)


def check(label: str, adapter: Any, spec: ConvSpec, inputs: tuple[Any, Any, Any] | None = None) -> Verdict:
    """supports() first (a reason, or no method for the case's op, means skip), then run and judge."""
    reason = ops.unsupported_reason(adapter, spec)
    if reason:
        return Verdict("skip", f"{label} does not support {spec.id}: {reason}")
    comparison = run(adapter, spec, inputs)
    if comparison.outcome == "unsupported":
        return Verdict("skip", f"{label} declined {spec.id} at call time: {comparison.error}", comparison)
    return verdict(label, spec, comparison, case_witness(label, adapter, spec, inputs), adapter_isa(adapter, spec))


def case_witness(label: str, adapter: Any, spec: ConvSpec, inputs: tuple[Any, ...] | None = None
                 ) -> witness.CaseWitness:
    """The witness of one case: the adapter's output here, toggle variants in their own worker processes."""
    values = ops.inputs(spec) if inputs is None else inputs

    def output() -> Any:
        call, fetch = ops.bind(adapter, spec, values)
        return fetch(call())

    return witness.CaseWitness(witness.shared(), spec, label, values, compute=output)


def known_wrong_values(label: str, calls: list[witness.Call], adapter: Any = None) -> list[str]:
    """The ids of the reviewed deviations that explain a broken relation, or [] when they do not.

    A relation runs the adapter on derived cases (other layouts, shapes, batches); record them with
    `witness.Recorder`. The break is known only when some call disagreed with the reference and every call
    that did is explained by a deviation whose witness holds on that call (its model, or its toggle variant
    on the same inputs) and whose hardware conditions hold on the kernels the adapter ran that call on (its
    `isa(spec)`; `adapter` defaults to the one `load_adapter(label)` loaded in this process, if any: no framework
    is imported here); otherwise it is a finding.
    """
    if adapter is None:
        adapter = _LOADED.get(label)
    found = witness.explain_calls(label, calls, isa=None if adapter is None else lambda s: adapter_isa(adapter, s))
    return sorted(set(found.explained.values())) if found.known else []
