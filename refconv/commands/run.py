"""Run a case set against adapters in isolated worker processes and write reports/<run-id>/.

Every finished (case, adapter) row is appended to rows.jsonl at once; results.csv and results.parquet
are rewritten atomically as the run goes and at its end. Ctrl-C stops cleanly: `refconv run --resume DIR`
finishes the run. `refconv run --case CASE_ID --adapters X` reruns one case and prints the full comparison.
`refconv run --dask tcp://scheduler:8786` runs the cases on a Dask cluster's workers (docs/cluster.md); the
rows are written here as they come back, each naming the host and worker that made it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

HELP = "run cases against adapters and write a report (results.csv/.parquet, provenance, repro scripts)"


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", default=None, metavar="SEL",
                   help="case selection, e.g. 'edge,random:50' (default: edge,cover,random:200,special:24)")
    p.add_argument("--seed", type=_non_negative_int, default=None, help="seed of the random sweep (default 0)")
    p.add_argument("--dtype", default=None, metavar="DTYPE",
                   help="run every selected case in this dtype (float16, bfloat16, float32, float64)")
    p.add_argument("--ops", default=None, metavar="OPS",
                   help="ops to check, e.g. conv2d,grad_input,grad_filter,transpose or all (default: every op the "
                        "selected adapters offer; the random sweep stays conv2d unless its part says '@ops')")
    p.add_argument("--adapters", default=None, metavar="A,B",
                   help="adapter labels, e.g. numpy,tf,tf:onednn=off,torch:isa=avx2 (default: every available "
                        "built-in, plus tf:onednn=on and keras:onednn=on where TensorFlow's default here is "
                        "oneDNN off)")
    p.add_argument("--isa-matrix", action="store_true",
                   help="also run each oneDNN engine (tf, keras, torch, torch-nn) at every oneDNN ISA level this CPU "
                        "supports (ONEDNN_MAX_CPU_ISA, one worker per level; docs/hardware.md)")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default reports/<run-id>)")
    p.add_argument("--workers", type=_positive_int, default=None, help="cases run at once (default 1)")
    p.add_argument("--case-timeout", type=_positive_float, default=None, metavar="S",
                   help="seconds one adapter may take on one case before its worker is replaced (default 60)")
    p.add_argument("--repeats", type=_non_negative_int, default=None,
                   help="timed calls after one warm-up (default 3)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="finish an interrupted run")
    p.add_argument("--force", action="store_true",
                   help="with --resume: continue even though adapter or refconv versions changed since the run began")
    p.add_argument("--case", default=None, metavar="CASE_ID", help="rerun one case and print the full comparison")
    p.add_argument("--no-isolation", action="store_true",
                   help="run adapters in this process (debugging, measuring isolation overhead)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true",
                   help="show the adapters' Python warnings as they first appear (always counted in warnings.json)")
    p.add_argument("--relations", default=None, metavar="NAMES",
                   help="metamorphic relations checked through each adapter after the cases: names "
                        "(batch_split,layout,...), all or none (default: all without --cases, none with it); "
                        "rows with outcome pass or broken")
    p.add_argument("--relations-budget", type=_non_negative_int, default=None, metavar="N",
                   help="cases the relations are checked on, drawn from the selected ones, cover cases first "
                        "(default 6)")
    p.add_argument("--allow-large", action="store_true",
                   help="build pinned engine versions (torch@2.4.0) whose environment pulls several GB")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run the cases on a Dask cluster, e.g. tcp://127.0.0.1:8786 (needs refconv[dask]; "
                        "the cluster's worker threads set the parallelism; name --adapters explicitly)")


def main(args: argparse.Namespace) -> int:
    from refconv import runner
    from refconv.errors import UsageError
    from refconv.store import RunStore, StoreWriteError

    _check_dask_arguments(args)
    if args.force and not args.resume:
        raise UsageError("--force applies to --resume only")
    if args.case:
        return _one_case(args)
    from refconv.relations_run import parse_names

    parse_names(args.relations)  # a bad name fails before anything is written
    store = RunStore.open(args.resume, force=args.force) if args.resume else None  # locked: one writer at a time
    if store is not None:
        config = runner.RunConfig.from_dict(store.read_json("run.json"))
        _override(config, args)
    else:
        config = _new_config(args)
    cluster = _connect(args.dask) if args.dask else None  # before the run directory exists: fail leaves nothing
    try:
        if cluster is not None:  # the workers check the adapters (unknown, missing framework) before it too
            cluster.start(tuple(config.adapters), config.isolation)
        if store is None:
            out = Path(args.out) if args.out else Path("reports") / config.run_id
            store = RunStore.create(out)
            _plan_relations(store, args)
        _preload_reporting()
        summary = runner.Runner(store, config, progress=not args.no_progress, cluster=cluster,
                                verbose=args.verbose).run()
        if not summary.interrupted:
            _relations_phase(store, config, summary, not args.no_progress,
                             cluster.executor() if cluster is not None else None)
    except OSError as exc:  # disk full writing a repro, a table...: the rows already stored are safe
        runner.close_pools()
        if store is not None:
            store.unlock()
        raise StoreWriteError(f"cannot write the run directory: {exc.strerror or exc}: {exc.filename or ''}; "
                              f"every finished row is kept; once fixed, continue with: "
                              f"{runner.resume_hint(store.dir) if store else 'refconv run --resume DIR'}") from None
    except BaseException:
        runner.close_pools()
        if store is not None:
            store.unlock()
        raise
    finally:
        if cluster is not None:
            cluster.close()
    try:
        _print_summary(summary)  # writes the reports into the run directory: still ours
    finally:
        store.unlock()
    for label, reason in config.unavailable.items():  # after the summary: the terminal shows the bar first
        print(f"refconv run: skipped adapter {label}: {reason}", file=sys.stderr)
    if summary.interrupted:
        print(f"refconv run: interrupted; {summary.new_rows} new rows kept. Continue with:\n"
              f"  {runner.resume_hint(summary.run_dir)}", file=sys.stderr)
        return 130
    if summary.errors:
        print(f"refconv run: {len(summary.errors)} case(s) failed inside refconv and have no rows; "
              f"after a fix, {runner.resume_hint(summary.run_dir)} runs them", file=sys.stderr)
        return 1
    return 0


def _preload_reporting() -> None:
    """Import what the run's end needs (pandas, pyarrow for the tables, the report) in a background thread:
    this process has little else to do while the workers import their frameworks."""
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):  # an import that fails here fails again, with its message, where used
            import pandas  # noqa: F401
            import pyarrow.dataset  # noqa: F401 (read_parquet's reader)
            import pyarrow.parquet  # noqa: F401

            import refconv.findings.group  # noqa: F401
            import refconv.report  # noqa: F401

    threading.Thread(target=load, name="refconv-preload", daemon=True).start()


def _plan_relations(store: Any, args: argparse.Namespace) -> None:
    """relations.json for a new run: which relations, on how many cases (by default all, in the default run only)."""
    from refconv import relations_run

    if args.relations is None and args.cases is not None:
        return  # an explicit case selection asks for those cases; --relations adds relations to it
    names = relations_run.parse_names(args.relations)
    budget = relations_run.DEFAULT_BUDGET if args.relations_budget is None else args.relations_budget
    if names and budget:
        relations_run.write_plan(store.dir, names, budget)


def _relations_phase(store: Any, config: Any, summary: Any, progress: bool, executor: Any = None) -> None:
    """The relation rows after the case rows (on the cluster with --dask); the tables and summary hold both."""
    from refconv import relations_run

    new_rows, interrupted = relations_run.run_phase(store, config, progress, executor)
    if not new_rows and not interrupted:
        return
    summary.rows = relations_run.ordered(store.rows(), config)
    summary.paths[:2] = store.write_tables(summary.rows)
    summary.new_rows += new_rows
    summary.interrupted = interrupted
    counts: dict[str, int] = {}
    for row in summary.rows:
        if row.get("relation"):
            counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    print("refconv run: relation rows: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())), file=sys.stderr)


def _check_dask_arguments(args: argparse.Namespace) -> None:
    from refconv.errors import UsageError

    if args.dask is None:
        return
    if args.case:
        raise UsageError("--case reruns one case in this process; drop --dask")
    if args.workers is not None:
        raise UsageError("--workers sets local parallelism; with --dask the cluster's worker threads set it")


def _connect(address: str) -> Any:
    from refconv import distributed

    cluster = distributed.connect(address)
    try:
        count = len(cluster.workers())
    except BaseException:
        cluster.close()
        raise
    print(f"refconv run: Dask scheduler {address}, {count} worker(s)", file=sys.stderr)
    return cluster


def _override(config: Any, args: argparse.Namespace) -> None:
    """On --resume the stored arguments hold; only how the run executes may change."""
    if args.workers is not None:
        config.workers = args.workers
    if args.case_timeout is not None:
        config.case_timeout = args.case_timeout
    if args.no_isolation:
        config.isolation = False


# Engines whose CPU kernels are oneDNN's (TensorFlow's when it is on, PyTorch's mkldnn): `isa=<level>` caps them.
ONEDNN_ENGINES = ("tf", "keras", "torch", "torch-nn")
TF_ENGINES = ("tf", "keras")  # oneDNN on or off by TF_ENABLE_ONEDNN_OPTS, default by the CPU


def split_labels(text: str) -> list[str]:
    """Adapter labels of a comma list; 'tf:onednn=on,isa=avx2' joins an option written after a comma to its label.

    >>> split_labels("numpy,tf:onednn=on,isa=avx2,torch")
    ['numpy', 'tf:onednn=on:isa=avx2', 'torch']
    """
    labels: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if labels and "=" in part and ":" not in part.partition("=")[0] and "." not in part.partition("=")[0]:
            labels[-1] += ":" + part  # key=value: an option of the label before (an adapter name has no '=')
        else:
            labels.append(part)
    return labels


def other_kernel_sides(labels: list[str]) -> list[str]:
    """tf:onednn=on where TensorFlow's default here is oneDNN off, so both kernel families run by default.

    Where the default is on, the off side is there already: the toggle witness `onednn=off` runs on failing rows.
    keras:onednn=on is left to --adapters: Keras calls the same TensorFlow kernels, and a second Keras worker
    took the default run on an AVX2-like setup from 234 s to 427 s together with tf:onednn=on (docs/hardware.md).
    """
    from refconv import hardware

    if hardware.tf_onednn_expected() or "tf" not in labels:
        return []
    return ["tf:onednn=on"]


def isa_matrix(labels: list[str]) -> list[str]:
    """Each oneDNN engine of `labels` at every oneDNN level this CPU supports (tf and keras with oneDNN on)."""
    import adapters
    from refconv import hardware

    out: list[str] = []
    for label in labels:
        ref = adapters.parse(label)
        if ref.name not in ONEDNN_ENGINES or ref.version or "isa" in ref.options or "off" in (
                ref.options.get("onednn"), ref.options.get("mkldnn")):
            continue
        options = {**ref.options, **({"onednn": "on"} if ref.name in TF_ENGINES else {})}
        out += [adapters.AdapterRef(ref.name, {**options, "isa": level}).label for level in hardware.onednn_levels()]
    return [label for label in dict.fromkeys(out) if label not in labels]


def resolve_adapters(text: str | None, local: bool = True,
                     matrix: bool = False) -> tuple[list[str], dict[str, str]]:
    """(labels to run, {skipped label: reason}); a named adapter that is unknown or unavailable is an error.

    With local=False (a --dask run) named adapters are only parsed: the cluster's workers check them. The default
    set holds both sides of TensorFlow's oneDNN switch; `matrix` adds every oneDNN ISA level (--isa-matrix).
    """
    import adapters
    from refconv.errors import UsageError

    if text is None:
        labels, skipped = [], {}
        for name in adapters.DEFAULT:
            reason = adapters.unavailable_reason(name)
            if reason:
                skipped[name] = reason
            else:
                labels.append(name)
        labels += other_kernel_sides(labels)
        return labels + (isa_matrix(labels) if matrix else []), skipped
    labels = []
    for item in split_labels(text):
        ref = adapters.parse(item)
        reason = adapters.unavailable_reason(ref) if local else None
        if reason:
            raise UsageError(f"adapter {ref.label!r} is unavailable: {reason}")
        if ref.label not in labels:
            labels.append(ref.label)
    if not labels:
        raise UsageError(f"--adapters names no adapter, got {text!r}")
    if matrix:
        for label in isa_matrix(labels):
            reason = adapters.unavailable_reason(label) if local else None
            if reason:
                raise UsageError(f"adapter {label!r} is unavailable: {reason}")
            labels.append(label)
    return labels, {}


def _new_config(args: argparse.Namespace) -> Any:
    from refconv import cases, runner
    from refconv.errors import UsageError

    selection = args.cases or cases.DEFAULT_SELECTION
    seed = 0 if args.seed is None else args.seed
    matrix = getattr(args, "isa_matrix", False)
    labels, skipped = resolve_adapters(args.adapters, local=args.dask is None, matrix=matrix)
    if args.dask is None:  # pinned versions (tf@2.19.1): build their environments now, a failure skips the adapter
        from refconv import envs

        failed = envs.prepare(labels, allow_large=args.allow_large, progress=not args.no_progress)
        labels, skipped = [label for label in labels if label not in failed], {**skipped, **failed}
    specs = cases.select(selection, seed=seed, ops=cases.parse_ops(args.ops) if args.ops else offered_ops(labels))
    if args.dtype is not None:
        specs = cases.with_dtype(specs, args.dtype)
    if not labels:
        raise UsageError("no adapter is available: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return runner.RunConfig(
        run_id=runner.new_run_id(), selection=selection, seed=seed, adapters=labels,
        cases=[[s.id, s.name] for s in specs],
        repeats=3 if args.repeats is None else args.repeats,
        case_timeout=60.0 if args.case_timeout is None else args.case_timeout,
        workers=args.workers or 1, isolation=not args.no_isolation, unavailable=skipped, argv=list(sys.argv),
    )


def offered_ops(labels: list[str]) -> tuple[str, ...]:
    """Every op some adapter offers (its class has the op's method), judged without instantiating it."""
    import importlib

    import adapters
    from refconv import ops
    from refconv.spec import OPS

    found = {"conv2d"}
    for label in labels:
        try:
            module, _, name = adapters._target(adapters.parse(label).name).partition(":")
            cls = getattr(importlib.import_module(module), name)
        except Exception:  # unresolvable here (a --dask worker's adapter): conv2d only
            continue
        found.update(op for op in OPS if ops.offers(cls, op))
    return tuple(op for op in OPS if op in found)


def _print_summary(summary: Any) -> None:
    import pandas as pd

    frame = pd.DataFrame(summary.rows)
    paths = list(summary.paths)
    if frame.empty:  # every case failed inside refconv (or none ran): no adapter x outcome table to show
        failed = len(getattr(summary, "errors", []) or [])
        print(f"refconv run: no rows in {summary.run_dir}; {failed} case(s) failed inside refconv")
        return
    try:
        from refconv.report import outcomes, write_reports
    except ImportError:  # refconv.report is being written in parallel; a plain crosstab meanwhile
        table = pd.crosstab(frame["adapter"], frame["outcome"]) if len(frame) else frame
    else:
        table = outcomes(frame)
        try:
            paths.extend(write_reports(summary.run_dir))
        except Exception as exc:  # the rows are safe on disk; a rendering failure must not hide that
            print(f"refconv run: warning: report rendering failed: {exc}", file=sys.stderr)
    print(table.to_string())
    repro_dir = Path(summary.run_dir) / "repro"
    if repro_dir.is_dir():
        paths.append(repro_dir)
    print("wrote:")
    for path in paths:
        print(f"  {path}")


def _one_case(args: argparse.Namespace) -> int:
    from refconv import runner
    from refconv.spec import ConvSpec

    spec = ConvSpec.from_id(args.case)
    labels, skipped = resolve_adapters(args.adapters)
    for label, reason in skipped.items():
        print(f"skipping adapter {label}: {reason}", file=sys.stderr)
    pool = runner.pool_for(labels, not args.no_isolation)
    try:
        expected, bound, answers = runner.evaluate(
            spec, labels, pool, 3 if args.repeats is None else args.repeats,
            60.0 if args.case_timeout is None else args.case_timeout, keep_arrays=True)
    finally:
        runner.close_pools()
    print(_case_text(spec, expected))
    failed = False
    for answer in answers:
        print()
        print(answer.comparison.message(answer.label, spec))
        known = _known_deviation(spec, answer.label, answer.comparison.outcome, answer.actual, answer.isa)
        if known:
            print(f"  known deviation {known}")
        timing = runner.timing_columns(spec, answer.times_ms)
        if timing["repeats"]:
            print(f"  time: median {timing['time_median_ms']:.3f} ms, min {timing['time_min_ms']:.3f} ms "
                  f"over {timing['repeats']} calls, {timing['gflops']:.3g} GFLOP/s")
        if answer.actual is not None and answer.actual.shape == expected.shape and expected.size:
            print(_worst_text(spec, expected, bound, answer.actual))
        failed = failed or answer.comparison.outcome not in runner.NO_REPRO
    return 1 if failed else 0


def _known_deviation(spec: Any, label: str, outcome: str, actual: Any = None, isa: str = "") -> str:
    """'id: reason (upstream)' of the reviewed deviation that explains this outcome (witness checked), or ''."""
    from refconv import deviations, hardware, witness
    from refconv.rows import case_columns

    row = {**case_columns(spec), "adapter": label, "outcome": outcome, "isa": isa,
           "cpu_features": hardware.cpu_features()}
    found = deviations.find(row, witness=witness.CaseWitness(witness.shared(), spec, label, actual=actual))
    return f"{found.id}: {found.reason} ({found.upstream})" if found else ""


def _case_text(spec: Any, expected: Any) -> str:
    from refconv.padding import geometry
    from refconv.rows import flops

    rows, cols = geometry(spec)
    return "\n".join([
        f"case {spec.id}",
        f"  {spec.describe()}",
        f"  geometry: output {rows.out}x{cols.out}; pads top {rows.before}, bottom {rows.after}, "
        f"left {cols.before}, right {cols.after}; K = {spec.reduction_length}; {flops(spec)} FLOPs",
        f"  shapes: x {spec.input_shape} (NHWC), w {spec.kernel_shape} (HWIO), "
        f"b {(spec.c_out,) if spec.bias else None}, expected {tuple(expected.shape)}"
        + ("" if spec.op == "conv2d" else f"; {spec.op} of it, dy/y {(spec.n, rows.out, cols.out, spec.c_out)}"),
    ])


def _worst_text(spec: Any, expected: Any, bound: Any, actual: Any, count: int = 5) -> str:
    """The elements with the largest bound ratio: where they are, what was wanted and what came."""
    import numpy as np

    from refconv.compare import eps, tiny

    got = np.asarray(actual).astype(np.float64)
    err = np.abs(got - expected)
    err = np.where(np.isnan(err), np.inf, err)
    ratio = (err / (eps(spec.dtype) * bound + tiny(spec.dtype))).ravel()
    lines = ["  worst elements (n, h, w, c): expected, actual, abs err, bound ratio"]
    for flat in np.argsort(-ratio, kind="stable")[:count]:
        index = tuple(int(i) for i in np.unravel_index(int(flat), expected.shape))
        lines.append(f"    {index}: {expected[index]:.9g}, {got[index]:.9g}, {err[index]:.3e}, {ratio[flat]:.3g}")
    return "\n".join(lines)
