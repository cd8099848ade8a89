"""GFLOP/s of the float64 reference against the equivalent GEMM, the direct loop and installed frameworks.

Run from the repository root:  PYTHONPATH=. python benchmarks/bench_reference.py [--repeats 7] [--no-frameworks]

For each case the "equivalent GEMM" is the matmul of the im2col shape measured in this process:
(N*Ho*Wo) x (kh*kw*c_in/g) @ (kh*kw*c_in/g) x (c_out/g), one per group, as a single np.matmul over
contiguous arrays (one 2-D matmul when g = 1). Every GFLOP/s figure counts the same useful work,
2 * N*Ho*Wo * kh*kw*c_in/g * c_out, so the columns compare directly. "ratio" is reference GFLOP/s over
GEMM GFLOP/s, both from the best (min) time; medians sit beside the minima because CPU timings, torch's
above all, are bimodal. Frameworks run through refconv's own adapters (only the `call` is timed, as in a
sweep), imported here and nowhere else. "work MiB" is the reference's peak traced allocation (tracemalloc,
a separate untimed call) beyond its output; the per-thread im2col workspaces (about 2 MiB each) are kept
from earlier calls and so not counted.

Issue 15's check, ratios of the base, grouped and stride-2 cases in N fresh processes (docs/performance.md):
    PYTHONPATH=. python benchmarks/bench_reference.py --fresh-processes 5 --repeats 15
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from refconv.blas_threads import describe
from refconv.padding import geometry
from refconv.reference import conv2d, conv2d_direct
from refconv.spec import ConvSpec


class Case(NamedTuple):
    label: str
    spec: ConvSpec


BASE = ConvSpec(n=8, h=64, w=64, c_in=32, c_out=64, kh=3, kw=3, padding="SAME", dtype="float64")
CASES = (
    Case("base 3x3 c32", BASE),
    Case("large K c256", BASE.replace(c_in=256)),
    Case("1x1 c64", BASE.replace(c_in=64, kh=1, kw=1)),
    Case("stride 2", BASE.replace(strides=(2, 2))),
    Case("dilation 2", BASE.replace(dilations=(2, 2))),
    Case("grouped g4", BASE.replace(c_in=64, groups=4)),
    Case("depthwise c64", BASE.replace(c_in=64, c_out=64, groups=64)),
    Case("5x5 VALID", BASE.replace(kh=5, kw=5, padding="VALID")),
)
SMALL = Case("small (direct)", ConvSpec(n=1, h=16, w=16, c_in=8, c_out=8, kh=3, kw=3, dtype="float64"))
FRAMEWORKS = (("torch", "float64"), ("torch", "float32"), ("tf", "float32"))


def flops(spec: ConvSpec) -> float:
    """Useful multiply-adds x 2 of a case."""
    rows, cols = geometry(spec)
    return 2.0 * spec.n * rows.out * cols.out * spec.reduction_length * spec.c_out


def timings(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(min, median) seconds of fn over repeats, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def paired_timings(fns: list[Callable[[], Any]], repeats: int) -> list[tuple[float, float]]:
    """(min, median) seconds of each fn, calls interleaved so that load from other processes hits all alike."""
    return [(min(t), statistics.median(t)) for t in interleaved(fns, repeats)]


def interleaved(fns: list[Callable[[], Any]], repeats: int, settle: float = 0.0) -> list[list[float]]:
    """Seconds of each call of each fn, after one warm-up each, in the order A B, B A, A B...

    The order alternates because a call slows the one right after it: OpenBLAS's worker threads spin
    for about 0.1 s after a multi-threaded call (docs/performance.md), so with a fixed order the same fn
    would always run beside them. Alternating, each fn follows each other fn and itself alike.
    `settle` seconds of sleep before each timed call let those threads go to sleep first.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for rep in range(repeats):
        order = list(zip(fns, times, strict=True))
        for fn, bucket in order if rep % 2 == 0 else order[::-1]:
            if settle:
                time.sleep(settle)
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return times


def inputs(spec: ConvSpec, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(spec.input_shape).astype(dtype)
    w = rng.standard_normal(spec.kernel_shape).astype(dtype)
    return x, w, rng.standard_normal(spec.c_out).astype(dtype)


def reference_call(spec: ConvSpec) -> Callable[[], np.ndarray]:
    x, w, b = inputs(spec)
    return lambda: conv2d(x, w, b, spec.strides, spec.padding, spec.dilations, spec.groups)


def gemm_call(spec: ConvSpec) -> Callable[[], np.ndarray]:
    """One matmul of the im2col shape (batched over groups), contiguous operands."""
    rows, cols = geometry(spec)
    m, k, g = spec.n * rows.out * cols.out, spec.reduction_length, spec.groups
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k) if g == 1 else (g, m, k))
    b = rng.standard_normal((k, spec.c_out) if g == 1 else (g, k, spec.c_out // g))
    return lambda: a @ b


def work_mib(spec: ConvSpec) -> float:
    """Peak traced allocation of one reference call beyond its output, in MiB."""
    call = reference_call(spec)
    tracemalloc.start()
    out = call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - out.nbytes) / 2**20


def framework_call(name: str, spec: ConvSpec) -> Callable[[], Any] | str:
    """The adapter's timed call for this case, or the reason it cannot run."""
    from adapters import load, unavailable_reason

    reason = unavailable_reason(name)
    if reason:
        return reason
    adapter = load(name)
    reason = adapter.supports(spec)
    if reason:
        return reason
    x, w, b = inputs(spec, np.dtype(spec.dtype))
    return adapter.prepare(x, w, b, spec).call  # type: ignore[no-any-return]


def gflops_cell(spec: ConvSpec, fn: Callable[[], Any] | str, repeats: int) -> str:
    if isinstance(fn, str):
        return "n/a"
    best, median = timings(fn, repeats)
    return f"{flops(spec) / best / 1e9:.1f} / {flops(spec) / median / 1e9:.1f}"


def row(case: Case, repeats: int, frameworks: bool) -> list[str]:
    spec = case.spec
    (ref_min, ref_med), (gemm_min, gemm_med) = paired_timings([reference_call(spec), gemm_call(spec)], repeats)
    f = flops(spec) / 1e9
    cells = [case.label, f"{f / ref_min:.1f} / {f / ref_med:.1f}", f"{f / gemm_min:.1f} / {f / gemm_med:.1f}",
             f"{gemm_min / ref_min:.2f}", f"{work_mib(spec):.1f}"]
    if frameworks:
        for name, dtype in FRAMEWORKS:
            s = spec.replace(dtype=dtype)
            cells.append(gflops_cell(s, framework_call(name, s), repeats))
    return cells


def small_row(repeats: int) -> list[str]:
    spec = SMALL.spec
    x, w, b = inputs(spec)
    direct_min, direct_med = timings(lambda: conv2d_direct(x, w, b), max(1, repeats // 3))
    ref_min, ref_med = timings(reference_call(spec), repeats)
    f = flops(spec) / 1e9
    return [SMALL.label, f"{f / ref_min:.2f} / {f / ref_med:.2f}", f"{f / direct_min:.3f} / {f / direct_med:.3f}"]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def provenance() -> str:
    """Versions, BLAS kernel and threads, CPU, BLAS environment and load: what the numbers depend on."""
    lines = [f"numpy {np.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs"]
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            lines.append(f"{pool['internal_api']} {pool['version']} kernel {pool.get('architecture')}, "
                         f"{pool['num_threads']} threads")
    except ImportError:
        lines.append(f"BLAS: {describe()} (threadpoolctl not installed)")
    blas_env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    lines.append(f"BLAS environment: {blas_env or 'none set'}")
    lines.append("load average: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    return "\n".join(lines)


# Issue 15's steadiness check: each case's target for GEMM time / reference time (minima), per fresh process
STEADY = (("base 3x3 c32", 0.85), ("grouped g4", 0.75), ("stride 2", 0.75))
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # set on some machines; they slow current numpy


def steady_figures(repeats: int, settle: float = 0.0) -> dict[str, Any]:
    """This process's ratios for the STEADY cases: all calls, and reference calls right after a GEMM / itself."""
    figures: dict[str, Any] = {"load": os.getloadavg()[0], "blas": describe(), "cases": {}}
    for label, _ in STEADY:
        spec = next(c.spec for c in CASES if c.label == label)
        ref, gemm = interleaved([reference_call(spec), gemm_call(spec)], repeats, settle)
        # in the order R G, G R, R G...: the first and odd repeats' reference calls follow a GEMM, the rest itself
        after_gemm, after_self = ref[:1] + ref[1::2], ref[2::2]
        figures["cases"][label] = {
            "ratio": min(gemm) / min(ref), "after_gemm": min(gemm) / min(after_gemm),
            "after_self": min(gemm) / min(after_self) if after_self else None,
            "reference_gflops": flops(spec) / min(ref) / 1e9, "gemm_gflops": flops(spec) / min(gemm) / 1e9,
        }
    figures["load_end"] = os.getloadavg()[0]
    return figures


def fresh_processes(count: int, repeats: int, unset_overrides: bool, settle: float = 0.0) -> list[dict[str, Any]]:
    """steady_figures of `count` fresh interpreters, one after the other."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    if unset_overrides:
        for name in BLAS_OVERRIDES:
            env.pop(name, None)
    results = []
    for _ in range(count):
        command = [sys.executable, __file__, "--steady-child", "--repeats", str(repeats), "--settle", str(settle)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.splitlines()[-1]))
    return results


def steady_report(results: list[dict[str, Any]], title: str) -> str:
    """Per-process ratios, then min / median / max per case against its target."""
    header = ["process", "load (1 min) start / end"] + [f"{label} (after GEMM / after itself)" for label, _ in STEADY]
    rows = []
    for i, r in enumerate(results, 1):
        cells = [str(i), f"{r['load']:.1f} / {r['load_end']:.1f}"]
        for label, _ in STEADY:
            c = r["cases"][label]
            after_self = "-" if c["after_self"] is None else f"{c['after_self']:.2f}"
            cells.append(f"**{c['ratio']:.2f}** ({c['after_gemm']:.2f} / {after_self})")
        rows.append(cells)
    summary = []
    for label, target in STEADY:
        ratios = sorted(r["cases"][label]["ratio"] for r in results)
        met = sum(v >= target for v in ratios)
        spread = f"{ratios[0]:.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}"
        summary.append([label, f">= {target:.2f}", spread, f"{met} of {len(ratios)}"])
    return "\n\n".join([title, results[0]["blas"] if results else "", markdown(header, rows),
                         markdown(["case", "target", "ratio min / median / max", "processes meeting it"], summary)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-frameworks", action="store_true", help="reference and GEMM only")
    parser.add_argument("--only", default="", help="comma-separated case labels (substring match)")
    parser.add_argument("--fresh-processes", type=int, default=0, metavar="N",
                        help="instead of the table: the base, grouped and stride-2 ratios in N fresh processes")
    parser.add_argument("--blas-env", choices=["as-is", "unset", "both"], default="as-is",
                        help=f"with --fresh-processes: keep or drop {', '.join(BLAS_OVERRIDES)} in the children")
    parser.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                        help="with --fresh-processes: sleep before each timed call (0.2 outlasts OpenBLAS's spin)")
    parser.add_argument("--steady-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steady_child:
        print(json.dumps(steady_figures(args.repeats, args.settle)))
        return
    if args.fresh_processes:
        print(provenance())
        set_now = {k: os.environ[k] for k in BLAS_OVERRIDES if k in os.environ}
        for unset in {"as-is": [False], "unset": [True], "both": [False, True]}[args.blas_env]:
            title = (f"{args.fresh_processes} fresh processes, {args.repeats} interleaved repeats each, "
                     f"{args.settle} s settle before each call; "
                     f"ratio = GEMM time / reference time (minima); BLAS overrides "
                     f"{'removed' if unset else 'as set'}: {set_now or 'none set'}")
            print()
            print(steady_report(fresh_processes(args.fresh_processes, args.repeats, unset, args.settle), title))
        print()
        print("load average at the end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
        return
    header = ["case", "reference GFLOP/s min / median", "GEMM GFLOP/s min / median", "ratio", "work MiB"]
    if not args.no_frameworks:
        header += [f"{name} {dtype}" for name, dtype in FRAMEWORKS]
    wanted = [s for s in args.only.split(",") if s]
    cases = [c for c in CASES if not wanted or any(s in c.label for s in wanted)]
    print(provenance())
    print()
    print(markdown(header, [row(c, args.repeats, not args.no_frameworks) for c in cases]))
    print()
    print(markdown(["case", "reference GFLOP/s min / median", "direct loop GFLOP/s min / median"],
                   [small_row(args.repeats)]))
    print()
    print("load average at the end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
