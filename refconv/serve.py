"""What an adapter's worker does with one case: inputs, the adapter's call, timings, the comparison.

This runs where the adapter lives (its worker process, or this process with --no-isolation). The case's
inputs are rebuilt from the case id (`ops.inputs` is seeded: bit-identical to the main process's); the
reference's expected values and bound arrive with the case (computed once per case in the main process,
shared by every adapter), so the comparison happens here and only a `Reply` travels back: the
`Comparison` record, the timings, the Python warnings the framework raised, and the output array only
when the caller asked for it (`keep`) or the output is wrong (a known deviation's witness is held to it).

Timed calls are exclusive across the workers of one pool when it gives a lock file: the workers run
their batches side by side, but no two adapters' timed calls overlap (flock: released by the kernel when
a worker dies holding it, so a killed worker never blocks the others).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refconv import ops
from refconv.compare import TOLERANCE_C, Comparison, compare
from refconv.rows import clean_text
from refconv.spec import ConvSpec

ERROR_CHARS = 2000  # framework error texts can be pages long; rows keep the head
WARNING_CHARS = 500
WITNESSED_OUTCOMES = ("mismatch", "wrong_shape", "wrong_dtype")  # outcomes with an output a model can be held to


@dataclass
class Reply:
    """One adapter's compact answer on one case: what a row needs, the output only on request."""

    comparison: Comparison
    times_ms: list[float] = field(default_factory=list)
    output: np.ndarray | None = None
    warnings: list[tuple[str, str, int]] = field(default_factory=list)  # (category, message, count)
    isa: str = ""  # the kernels the adapter says it dispatched to on this case (refconv.hardware)


def case_isa(adapter: Any, spec: ConvSpec | None) -> str:
    """The adapter's `isa(spec)` (None: its general answer), '' when it has none or it fails."""
    fn = getattr(adapter, "isa", None)
    if not callable(fn):
        return ""
    try:
        return clean_text(fn(spec))[:200]
    except Exception:  # noqa: BLE001 - provenance must never fail a case
        return ""


def error_text(exc: BaseException) -> str:
    """'Type: message', trimmed to ERROR_CHARS."""
    text = clean_text(f"{type(exc).__name__}: {exc}".strip())  # an engine's message may hold any bytes
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + " [...]"


def failed(kind: str, spec: ConvSpec, error: str, shape: tuple[int, ...] | None = None,
           size: int | None = None) -> Comparison:
    """The Comparison of a case that produced no output (unsupported, raised, crashed, timeout)."""
    return Comparison(kind, tuple(shape or ()), None, int(size or 0), tolerance_c=TOLERANCE_C[spec.dtype], error=error)


def judge(spec: ConvSpec, expected: np.ndarray, bound: np.ndarray, output: Any) -> Comparison:
    """compare(), where an output compare cannot read (object dtype, ...) is the adapter's failure."""
    try:
        return compare(spec, expected, bound, output)
    except Exception as exc:
        return failed("raised", spec, f"returned a value that cannot be compared: {error_text(exc)}",
                      expected.shape, expected.size)


class TimingLock:
    """An exclusive flock around timed calls, shared by the workers of one pool (a no-op without a path)."""

    def __init__(self, path: str | None) -> None:
        self._fd: int | None = None
        if path:
            import os

            with contextlib.suppress(OSError):
                self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._fd is None:
            yield
            return
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


NO_LOCK = TimingLock(None)


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def run_op(adapter: Any, spec: ConvSpec, repeats: int, lock: TimingLock = NO_LOCK) -> dict[str, Any]:
    """Run one case: {'kind': 'output'|'unsupported'|'raised', 'output', 'error', 'times_ms'}."""
    from adapters.base import Unsupported

    values = ops.inputs(spec)
    try:
        reason = ops.unsupported_reason(adapter, spec)
        if reason:
            return {"kind": "unsupported", "output": None, "error": str(reason), "times_ms": []}
        call, fetch = ops.bind(adapter, spec, values)
        output = fetch(call())  # the warm-up; its output is the one compared
        with lock.held():
            times = [_timed(call) for _ in range(repeats)]
        return {"kind": "output", "output": np.asarray(output), "error": "", "times_ms": times}
    except Unsupported as exc:
        return {"kind": "unsupported", "output": None, "error": str(exc), "times_ms": []}
    except Exception as exc:
        return {"kind": "raised", "output": None, "error": error_text(exc), "times_ms": []}


def serve(adapter: Any, case_id: str, repeats: int) -> dict[str, Any]:
    """One case by id, the output returned whole (the single-request form of `serve_case`)."""
    return run_op(adapter, ConvSpec.from_id(case_id), repeats)


def serve_case(adapter: Any, case_id: str, expected: np.ndarray, bound: np.ndarray, repeats: int,
               keep: bool = False, lock: TimingLock = NO_LOCK) -> Reply:
    """Run one case and compare it here: the compact Reply a row is built from."""
    spec = ConvSpec.from_id(case_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # count every occurrence, not just the first per location
        reply = run_op(adapter, spec, repeats, lock)
    if reply["kind"] == "output":
        comparison = judge(spec, expected, bound, reply["output"])
    else:
        comparison = failed(reply["kind"], spec, reply["error"], expected.shape, expected.size)
    # a wrong output travels back too: a witnessed known deviation is checked on the row's own output, not
    # on a second run of the case in a fresh worker (one Keras worker start cost 7 s of a 53 s run)
    kept = keep or comparison.outcome in WITNESSED_OUTCOMES
    return Reply(comparison, list(reply["times_ms"]), reply["output"] if kept else None, _counted(caught),
                 case_isa(adapter, spec))


def _counted(caught: list[warnings.WarningMessage]) -> list[tuple[str, str, int]]:
    """(category, message, count) of each distinct warning, in first-seen order."""
    counts: dict[tuple[str, str], int] = {}
    for item in caught:
        key = (item.category.__name__, str(item.message)[:WARNING_CHARS])
        counts[key] = counts.get(key, 0) + 1
    return [(category, message, n) for (category, message), n in counts.items()]
