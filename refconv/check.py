"""`refconv check`: the user's own arrays through the float64 reference and every engine: bug or rounding?

The arrays are given NHWC/HWIO (or NCHW and OIHW, converted here); their dtype is the case dtype. The
reference runs here in float64; each engine runs on exactly those values inside its own worker process
(`WorkerHandle.call("refconv.check:run_in_worker", spec, values)`), so no framework is imported in this
process. Each answer is judged by `refconv.compare` and becomes a row like a run's rows, with a one-line
verdict and the known deviation that explains it, if one does.

>>> import numpy as np
>>> x, w = np.ones((1, 4, 4, 2), np.float32), np.ones((3, 3, 2, 3), np.float32)
>>> spec, values = case_of(x, w, strides=2, padding="VALID")
>>> spec.id
'n1-4x4x2-k3x3x3-s2x2-valid-f32-nobias'
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refconv import deviations, ops
from refconv.compare import TOLERANCE_C, Comparison, compare
from refconv.errors import SpecError, UsageError
from refconv.spec import DTYPES, ConvSpec

TARGET = "refconv.check:run_in_worker"
CALL_TIMEOUT_S = 120.0  # one call includes building the framework's op for these shapes on a busy machine
OK_OUTCOMES = ("pass", "unsupported")
X_LAYOUTS = ("NHWC", "NCHW")
W_LAYOUTS = ("HWIO", "OIHW")
Values = tuple[np.ndarray, np.ndarray, np.ndarray | None]


# --- the case from the user's arrays -----------------------------------------------------------


def load_array(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """A .npy file as an array; anything unreadable is a one-line UsageError."""
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise UsageError(f"{what} file {os.fspath(path)!r} is not a NumPy .npy file")
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(f"cannot read {what} from {os.fspath(path)!r}: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise UsageError(f"{what} file {os.fspath(path)!r} holds several arrays (.npz); give one .npy per array")
    if array.dtype == np.dtype("V2"):  # np.save writes ml_dtypes' bfloat16 as raw 2-byte records; no other 2-byte one
        from refconv.inputs import np_dtype

        return array.view(np_dtype("bfloat16"))
    return array


def _dtype_of(array: np.ndarray, what: str) -> str:
    name = array.dtype.name
    if name not in DTYPES:
        raise UsageError(f"{what} has dtype {name}; refconv checks {', '.join(DTYPES)}")
    return name


def case_of(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, strides: Any = 1, padding: Any = "SAME",
            dilations: Any = 1, groups: int = 1, layout: str = "NHWC", w_layout: str = "HWIO",
            name: str = "check") -> tuple[ConvSpec, Values]:
    """(the ConvSpec the arrays describe, (x NHWC, w HWIO, b)); shapes that do not fit raise UsageError."""
    if layout not in X_LAYOUTS:
        raise UsageError(f"layout must be one of {', '.join(X_LAYOUTS)}, got {layout!r}")
    if w_layout not in W_LAYOUTS:
        raise UsageError(f"w_layout must be one of {', '.join(W_LAYOUTS)}, got {w_layout!r}")
    x, w = np.asarray(x), np.asarray(w)
    for array, what, layout_name in ((x, "x", layout), (w, "w", w_layout)):
        if array.ndim != 4:
            raise UsageError(f"{what} must be 4-D ({layout_name}), got shape {array.shape}")
    dtype = _dtype_of(x, "x")
    for other, what in ((w, "w"), (b, "b")):
        if other is not None and _dtype_of(np.asarray(other), what) != dtype:
            raise UsageError(f"x is {dtype} but {what} is {np.asarray(other).dtype.name}; give every array one dtype")
    if layout == "NCHW":
        x = x.transpose(0, 2, 3, 1)
    if w_layout == "OIHW":
        w = w.transpose(2, 3, 1, 0)
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    n, h, width, c_in = x.shape
    kh, kw, c_in_g, c_out = w.shape
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise UsageError(f"groups must be a positive integer, got {groups!r}")
    if c_in_g * groups != c_in:
        raise UsageError(f"w {w_layout} expects {c_in_g * groups} input channels with groups={groups} "
                         f"(w shape {tuple(np.asarray(w).shape)} as HWIO), but x has {c_in}")
    if b is not None:
        b = np.ascontiguousarray(b)
        if b.shape != (c_out,):
            raise UsageError(f"b must have shape ({c_out},) (one value per output channel), got {b.shape}")
    try:
        spec = ConvSpec(n=n, h=h, w=width, c_in=c_in, c_out=c_out, kh=kh, kw=kw, strides=strides,
                        padding=padding, dilations=dilations, groups=groups, bias=b is not None, dtype=dtype,
                        layout=layout, name=name)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    return spec, (x, w, b)


# --- one engine on the arrays, inside its worker -----------------------------------------------


def run_in_worker(adapter: Any, spec: ConvSpec, values: Values) -> dict[str, Any]:
    """The engine's output on exactly these values: {'kind': 'output'|'unsupported'|'raised', 'output', 'error'}."""
    from adapters.base import Unsupported
    from refconv.serve import case_isa
    from refconv.worker import error_text

    isa = case_isa(adapter, spec)
    try:
        reason = ops.unsupported_reason(adapter, spec)
        if reason:
            return {"kind": "unsupported", "output": None, "error": str(reason), "isa": isa}
        call, fetch = ops.bind(adapter, spec, values)
        return {"kind": "output", "output": np.asarray(fetch(call())), "error": "", "isa": isa}
    except Unsupported as exc:
        return {"kind": "unsupported", "output": None, "error": str(exc), "isa": isa}
    except Exception as exc:
        return {"kind": "raised", "output": None, "error": error_text(exc), "isa": isa}


def _comparison(spec: ConvSpec, expected: np.ndarray, bound: np.ndarray, reply: dict[str, Any]) -> Comparison:
    shape, c = tuple(expected.shape), TOLERANCE_C[spec.dtype]
    if reply["kind"] != "output":
        return Comparison(reply["kind"], shape, None, expected.size, tolerance_c=c, error=reply["error"])
    try:
        return compare(spec, expected, bound, reply["output"])
    except Exception as exc:  # an output compare cannot read is the engine's failure, as in the runner
        return Comparison("raised", shape, None, expected.size, tolerance_c=c,
                          error=f"returned a value that cannot be compared: {type(exc).__name__}: {exc}")


def evaluate_values(spec: ConvSpec, values: Values, labels: Sequence[str], handle: Callable[[str], Any],
                    timeout: float = CALL_TIMEOUT_S) -> list[Any]:
    """One `refconv.runner.Answer` per label for these exact values; `handle(label)` gives the label's worker."""
    from refconv.runner import Answer
    from refconv.worker import WorkerCallError, WorkerCrashed, WorkerLoadError, WorkerTimeout

    expected, bound = ops.reference(spec, values)
    answers = []
    for label in labels:
        try:
            reply = handle(label).call(TARGET, spec, values, timeout=timeout)
        except (WorkerCrashed, WorkerLoadError) as exc:
            reply = {"kind": "crashed", "error": str(exc)}
        except WorkerTimeout as exc:
            reply = {"kind": "timeout", "error": str(exc)}
        except WorkerCallError as exc:  # run_in_worker catches the engine's errors; this is refconv's own
            reply = {"kind": "raised", "error": str(exc)}
        output = reply.get("output") if reply["kind"] == "output" else None
        answers.append(Answer(label, _comparison(spec, expected, bound, reply), actual=output,
                              isa=str(reply.get("isa", ""))))
    return answers


# --- rows and verdicts --------------------------------------------------------------------------


def verdict(row: dict[str, Any]) -> str:
    """One line: within rounding, beyond rounding (a finding, known or NEW), or why the engine declined."""
    outcome = row["outcome"]
    if outcome == "pass":
        return (f"within rounding: the difference is at most {float(row['bound_ratio']):.2g}x eps*(|x| conv |w| + |b|);"
                f" any summation order may give up to {float(row['tolerance_c']):g}x")
    if outcome == "unsupported":
        return f"not checked: the engine declined ({row['error']})"
    known = row.get("known_deviation") or ""
    why = f"known deviation {known}" if known else "NEW (no known deviation explains it)"
    if outcome == "mismatch":
        return (f"beyond rounding: finding, {int(row['mismatched'])} / {int(row['n_elements'])} elements beyond "
                f"C={float(row['tolerance_c']):g} (bound ratio {float(row['bound_ratio']):.3g}); {why}")
    detail = str(row.get("error") or "").splitlines()[0][:200] if row.get("error") else ""
    return f"finding, {outcome}{': ' + detail if detail else ''}; {why}"


@dataclass
class Session:
    """Worker processes and provenance shared by the cases of one check or audit."""

    labels: list[str]
    unavailable: dict[str, str]
    pool: Any
    info: dict[str, dict[str, Any]]
    provenance: dict[str, Any]
    run_id: str
    argv: list[str] = field(default_factory=list)
    extra_handles: dict[str, Any] = field(default_factory=dict)

    def handle(self, label: str) -> Any:
        """The worker of an engine of this session, or of another label (a toggle variant), started on demand."""
        if label in self.labels:
            return self.pool.handle(label)
        if label not in self.extra_handles:
            from refconv.worker import InProcessHandle, WorkerHandle

            self.extra_handles[label] = WorkerHandle(label) if self.pool.isolation else InProcessHandle(label)
        return self.extra_handles[label]

    def rows(self, spec: ConvSpec, values: Values, answers: list[Any], run_dir: Path | None,
             extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows as a run builds them, plus known deviations, verdicts and (given a run dir) repro scripts."""
        from refconv import provenance, repro, repro_hardware
        from refconv.runner import CaseResult, RowContext, build_rows

        ctx = RowContext(self.run_id, self.info, provenance.row_columns(self.provenance))
        rows = build_rows(CaseResult(spec, answers), ctx)
        for answer, row in zip(answers, rows, strict=True):
            row.update(extra or {})
            row["known_deviation"] = known_deviation(row, ArrayWitness(spec, values, answer.actual, self))
            row["verdict"] = verdict(row)
            if run_dir is not None and row["outcome"] not in OK_OUTCOMES:
                levels = repro_hardware.passing_levels(rows, answer.label)
                row["repro"] = repro.write(run_dir, spec, answer.label, answer.comparison.message(answer.label, spec),
                                           *values, row=row, passing_levels=levels)
        return rows

    def close(self) -> None:
        self.pool.close()
        for handle in self.extra_handles.values():
            handle.close()


@dataclass
class ArrayWitness:
    """A known deviation's witness on the user's own arrays (refconv.deviations.Witness)."""

    spec: ConvSpec
    values: Values
    actual: np.ndarray | None
    session: Session

    def inputs(self) -> Values:
        return self.values

    def output(self) -> np.ndarray | None:
        return self.actual

    def passes(self, label: str) -> bool:
        """Does `label` (a toggle variant, say tf:onednn=off) pass on exactly these values?"""
        answers = evaluate_values(self.spec, self.values, [label], self.session.handle)
        return bool(answers[0].comparison.outcome == "pass")


def known_deviation(row: dict[str, Any], witness: ArrayWitness) -> str:
    """The reviewed entry that explains a failing row (a witnessed entry only where its witness holds), or ''."""
    if row["outcome"] in OK_OUTCOMES:
        return ""
    return deviations.explain(row, witness)


def start(adapters: str | Sequence[str] | None, isolation: bool = True, argv: list[str] | None = None) -> Session:
    """Resolve the engines (default: every available one) and start one worker each; a failing one is a UsageError."""
    from refconv import provenance
    from refconv.commands.run import resolve_adapters
    from refconv.pool import Pool
    from refconv.runner import new_run_id
    from refconv.worker import WorkerCrashed, WorkerLoadError, WorkerTimeout

    text = adapters if adapters is None or isinstance(adapters, str) else ",".join(adapters)
    labels, unavailable = resolve_adapters(text)
    if not labels:
        raise UsageError("no adapter is available: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    pool = Pool(labels, isolation)
    try:
        info = pool.start()
    except (WorkerLoadError, WorkerCrashed, WorkerTimeout) as exc:
        pool.close()
        raise UsageError(str(exc)) from None
    argv = list(sys.argv) if argv is None else argv
    prov = provenance.collect(argv, info, unavailable, provenance.utc_now())
    return Session(labels, unavailable, pool, info, prov, new_run_id(), argv)


def write_run(run_dir: Path, store: Any, session: Session, rows: list[dict[str, Any]],
              arguments: dict[str, Any]) -> list[Path]:
    """The usual run directory: rows.jsonl, results.csv/.parquet, provenance.json, run.json, summary.md, report.html."""
    from refconv import provenance

    store.write_json("run.json", arguments)  # not a RunConfig: `refconv run --resume` refuses it in one line
    store.append(rows)
    store.close()
    paths = store.write_tables(rows)
    session.provenance["finished_utc"] = provenance.utc_now()
    session.provenance["main_process_frameworks"] = provenance.main_process_frameworks()
    paths.append(store.write_json("provenance.json", session.provenance))
    try:
        from refconv.report import write_reports

        paths.extend(write_reports(run_dir))
    except Exception as exc:  # the rows are safe on disk; a rendering failure must not hide that
        print(f"refconv: warning: report rendering failed: {exc}", file=sys.stderr)
    return paths


def exit_code(rows: list[dict[str, Any]]) -> int:
    """0 when every engine is within rounding (or declined), 1 when one is beyond."""
    return 1 if any(row["outcome"] not in OK_OUTCOMES for row in rows) else 0


def check(x: Any, w: Any, b: Any = None, strides: Any = 1, padding: Any = "SAME", dilations: Any = 1,
          groups: int = 1, layout: str = "NHWC", w_layout: str = "HWIO",
          adapters: str | Sequence[str] | None = None, out: str | os.PathLike[str] | None = None,
          isolation: bool = True, timeout: float = CALL_TIMEOUT_S) -> Any:
    """The arrays through the reference and every engine: a pandas DataFrame, one row per engine, with `verdict`.

    >>> df = refconv.check(x, w, b, strides=2, padding="SAME", adapters="numpy,tf")  # doctest: +SKIP
    >>> df[["adapter", "outcome", "bound_ratio", "verdict"]]                          # doctest: +SKIP
    """
    import pandas as pd

    spec, values = case_of(np.asarray(x), np.asarray(w), None if b is None else np.asarray(b), strides, padding,
                           dilations, groups, layout, w_layout)
    rows, _ = run_check(spec, values, adapters, out, isolation, timeout, argv=["refconv.check(...)"])
    return pd.DataFrame(rows)


def run_check(spec: ConvSpec, values: Values, adapters: str | Sequence[str] | None,
              out: str | os.PathLike[str] | None, isolation: bool = True, timeout: float = CALL_TIMEOUT_S,
              argv: list[str] | None = None) -> tuple[list[dict[str, Any]], list[Path]]:
    """(rows, files written): the engines on one user case, into `out` when given."""
    from refconv.store import RunStore

    store = RunStore.create(Path(out)) if out is not None else None  # fail on a bad folder before any work
    session = start(adapters, isolation, argv)
    try:
        answers = evaluate_values(spec, values, session.labels, session.handle, timeout)
        rows = session.rows(spec, values, answers, None if store is None else store.dir)
    finally:
        session.close()
    paths: list[Path] = []
    if store is not None:
        arguments = {"command": "check", "case": spec.id, "adapters": session.labels,
                     "unavailable": session.unavailable, "argv": session.argv}
        paths = write_run(store.dir, store, session, rows, arguments)
    return rows, paths
