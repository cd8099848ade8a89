"""Witnesses of known deviations: the row's own output and the same case through a toggle variant.

A witnessed entry of refconv/data/known_deviations.toml explains a failing row only when its witness holds
on that row (`refconv.deviations.Deviation.witnessed`): a model must reproduce the adapter's output, or a
toggle variant (e.g. `tf:onednn=off`) must pass the same case on the same inputs. `VariantRunner` runs a
label on a case in that label's own worker process (TF reads TF_ENABLE_ONEDNN_OPTS only at import, so a
variant never shares a process with its default), one `refconv.worker.WorkerHandle` per label, started on
first use and kept until `close`. `CaseWitness` is one row's view of it. `Recorder` keeps every call a
metamorphic relation makes, so a broken relation is explained only by deviations whose witness holds on
the calls that disagreed with the reference (`explain_calls`).

>>> variants = VariantRunner()
>>> witness = CaseWitness(variants, ConvSpec(n=1, h=3, w=3, c_in=1, c_out=1, kh=2, kw=2), "numpy")
>>> witness.passes("numpy")
True
>>> variants.close()
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refconv import deviations, ops
from refconv.compare import Comparison, compare
from refconv.rows import case_columns
from refconv.spec import ConvSpec
from refconv.worker import WorkerCallError, WorkerCrashed, WorkerHandle, WorkerLoadError, WorkerTimeout, error_text

TIMEOUT_S = 60.0
# A relation compares values in float64, so an output of another dtype with the right values did not break it.
VALUES_AGREE = ("pass", "wrong_dtype")
_FAILURES = {WorkerCrashed: "crashed", WorkerTimeout: "timeout", WorkerCallError: "raised"}


def run_values(adapter: Any, spec: ConvSpec, values: tuple[Any, ...] | None) -> dict[str, Any]:
    """Worker target: the adapter's answer on the case (its seeded inputs unless given), as `worker.serve` gives."""
    from adapters.base import Unsupported

    values = ops.inputs(spec) if values is None else values
    try:
        reason = ops.unsupported_reason(adapter, spec)
        if reason:
            return {"kind": "unsupported", "output": None, "error": str(reason)}
        call, fetch = ops.bind(adapter, spec, values)
        return {"kind": "output", "output": np.asarray(fetch(call())), "error": ""}
    except Unsupported as exc:
        return {"kind": "unsupported", "output": None, "error": str(exc)}
    except Exception as exc:
        return {"kind": "raised", "output": None, "error": error_text(exc)}


class VariantRunner:
    """Runs adapter labels on single cases in worker processes kept per label; `close` stops them."""

    def __init__(self, timeout: float = TIMEOUT_S) -> None:
        self.timeout = timeout
        self._handles: dict[str, WorkerHandle] = {}
        self._broken: dict[str, str] = {}  # label -> why it cannot load here (asked once, not per row)
        self._lock = threading.Lock()

    def answer(self, label: str, spec: ConvSpec, values: tuple[Any, ...] | None = None) -> dict[str, Any]:
        """{'kind': 'output'|'unsupported'|'raised'|'crashed'|'timeout'|'unavailable', 'output', 'error'}."""
        with self._lock:
            if label in self._broken:
                return {"kind": "unavailable", "output": None, "error": self._broken[label]}
            handle = self._handles.setdefault(label, WorkerHandle(label))
            try:
                return handle.call("refconv.witness:run_values", spec, values, timeout=self.timeout)  # type: ignore[no-any-return]
            except WorkerLoadError as exc:
                self._broken[label] = str(exc)
                return {"kind": "unavailable", "output": None, "error": str(exc)}
            except (WorkerCrashed, WorkerTimeout, WorkerCallError) as exc:
                return {"kind": _FAILURES[type(exc)], "output": None, "error": str(exc)}

    def isa(self, label: str, spec: ConvSpec) -> str:
        """The kernels the label's adapter runs the case on, asked in its worker (its `isa(spec)`; '' if none)."""
        with self._lock:
            if label in self._broken:
                return ""
            handle = self._handles.setdefault(label, WorkerHandle(label))
            try:
                return str(handle.call("refconv.serve:case_isa", spec, timeout=self.timeout) or "")
            except WorkerLoadError as exc:
                self._broken[label] = str(exc)
                return ""
            except (WorkerCrashed, WorkerTimeout, WorkerCallError):
                return ""

    def output(self, label: str, spec: ConvSpec, values: tuple[Any, ...] | None = None) -> np.ndarray | None:
        """The label's output array on the case, or None when it gave none."""
        return self.answer(label, spec, values)["output"]  # type: ignore[no-any-return]

    def compare(self, label: str, spec: ConvSpec, values: tuple[Any, ...] | None = None) -> Comparison:
        """The label's verdict on the case against the reference on the same inputs."""
        values = ops.inputs(spec) if values is None else values
        expected, bound = ops.reference(spec, values)
        reply = self.answer(label, spec, values)
        if reply["kind"] != "output":
            return Comparison(reply["kind"], tuple(expected.shape), None, expected.size, error=reply["error"])
        return compare(spec, expected, bound, reply["output"])

    def close(self) -> None:
        """Stop every worker this runner started."""
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.close()


# An output of uninitialised memory is whatever the allocator hands back: the Eigen filter-gradient example failed in
# 8 of 8 fresh processes on one day and passed in one under `tox -e avx2`, so a replay gets a few fresh processes.
FRESH_TRIES = 3


def fresh_compare(label: str, spec: ConvSpec, values: tuple[Any, ...] | None = None,
                  timeout: float = TIMEOUT_S, tries: int = FRESH_TRIES) -> Comparison:
    """The label's verdict on the case in a new worker process of its own (stopped after): nothing ran there before,
    as a known deviation's replay needs for a crash or an output of uninitialised memory (Deviation.isolated).

    Up to `tries` fresh processes, the first failing verdict kept: a fixed framework passes every one of them.
    """
    comparison = None
    for _ in range(max(tries, 1)):
        runner = VariantRunner(timeout)
        try:
            comparison = runner.compare(label, spec, values)
        finally:
            runner.close()
        if comparison.outcome != "pass":
            break
    assert comparison is not None
    return comparison


_SHARED: list[VariantRunner] = []
_SHARED_LOCK = threading.Lock()


def shared() -> VariantRunner:
    """This process's VariantRunner (created on first use, closed by `close_shared` or at exit)."""
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(VariantRunner())
            atexit.register(close_shared)
        return _SHARED[0]


def close_shared() -> None:
    """Stop the shared runner's workers; the next `shared()` starts afresh."""
    with _SHARED_LOCK:
        runners = list(_SHARED)
        _SHARED.clear()
    for runner in runners:
        runner.close()


@dataclass
class CaseWitness:
    """One row's witness: its case, inputs and output (recomputed in a worker when not given), and variants."""

    variants: VariantRunner
    spec: ConvSpec
    label: str
    values: tuple[Any, ...] | None = None  # None: the case's seeded inputs
    actual: np.ndarray | None = None  # the row's output when the caller kept it
    compute: Callable[[], np.ndarray] | None = None  # how to get it again in this process, if the caller can
    _passes: dict[str, bool] = field(default_factory=dict, repr=False)

    def inputs(self) -> tuple[Any, ...]:
        if self.values is None:
            self.values = ops.inputs(self.spec)
        return self.values

    def output(self) -> np.ndarray | None:
        if self.actual is None:
            self.actual = self.compute() if self.compute else self.variants.output(self.label, self.spec, self.values)
        return self.actual

    def passes(self, label: str) -> bool:
        if label not in self._passes:
            self._passes[label] = self.variants.compare(label, self.spec, self.values).outcome == "pass"
        return self._passes[label]


@dataclass(frozen=True)
class Call:
    """One convolution a relation ran through the adapter: the case, its inputs and what came back."""

    spec: ConvSpec
    values: tuple[Any, ...]
    actual: np.ndarray


Conv = Callable[[np.ndarray, np.ndarray, "np.ndarray | None", ConvSpec], np.ndarray]


class Recorder:
    """A conv callable that keeps every call it passes on (for explaining a broken relation)."""

    def __init__(self, conv: Conv) -> None:
        self.conv = conv
        self.calls: list[Call] = []

    def __call__(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
        out = self.conv(x, w, b, spec)
        self.calls.append(Call(spec, (x, w, b), np.asarray(out)))
        return out


@dataclass
class CallsVerdict:
    """Which calls of a relation disagreed with the reference, and which deviation explains each."""

    explained: dict[str, str] = field(default_factory=dict)  # call's case id -> deviation id
    unexplained: list[str] = field(default_factory=list)  # messages of calls no witnessed deviation explains

    @property
    def known(self) -> bool:
        """Some call disagreed and every disagreeing call is explained by a deviation whose witness held."""
        return bool(self.explained) and not self.unexplained


def explain_calls(label: str, calls: list[Call], variants: VariantRunner | None = None,
                  isa: Callable[[ConvSpec], str] | None = None) -> CallsVerdict:
    """Hold each recorded call against the reference; explain each disagreement with a witnessed deviation.

    `isa(spec)` names the kernels the adapter ran a call on (its adapter's `isa`): each call's row carries it and
    this machine's cpu_features, so an entry explains a call only where its hardware conditions hold on it
    (without `isa` the kernels are unknown and no hardware-conditioned entry explains anything).
    """
    from refconv.hardware import cpu_features

    verdict = CallsVerdict()
    for call in calls:
        expected, bound = ops.reference(call.spec, call.values)
        comparison = compare(call.spec, expected, bound, call.actual)
        if comparison.outcome in VALUES_AGREE:
            continue
        row = {**case_columns(call.spec), "adapter": label, "outcome": comparison.outcome,
               "isa": isa(call.spec) if isa else "", "cpu_features": cpu_features()}
        witness = CaseWitness(variants or shared(), call.spec, label, call.values, call.actual)
        found = deviations.explain(row, witness)
        if found:
            verdict.explained[call.spec.id] = found
        else:
            verdict.unexplained.append(comparison.message(label, call.spec))
    return verdict
