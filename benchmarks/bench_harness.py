"""The harness against the engines: issue 15's speed targets, measured in one run, interleaved and repeated.

Run from the repository root:
  PYTHONPATH=. python benchmarks/bench_harness.py [--only sweep,report,dask] [--rounds 3] [--base DIR]

Three measurements, each a ratio of two `python -m refconv run` subprocesses timed back to back, in
alternating order, `--rounds` times (the machine may be shared: the ratio of each round, then the median
and the spread over rounds):
- sweep: `--cases random:1000 --dtype float32 --adapters numpy,torch`, isolated against `--no-isolation`
  (target: isolated within 1.3x), and each run's harness share = wall minus the engines' work, the
  reference and the one-time imports (target: at most 30% of the isolated wall). The engines' work and the
  reference (expected + bound) are re-timed here case by case (engines: the adapter's prepare, warm-up
  call and fetch, and 3 timed calls, as a run asks, in 3 fresh interpreters, the median taken: one pass
  varied by a third); the imports are `adapters.load` of
  each adapter in a fresh interpreter, minus a bare interpreter's start. The rows' own timings (median x
  (repeats + 1)) are shown beside them; they leave out prepare, fetch and a slow first call.
- report: `tox -e report`'s command, `refconv run` with its defaults (the default case set on every engine
  available), run from `--base` (a copy of an older tree, e.g. `git archive HEAD | tar -x -C /tmp/base`),
  against this tree on the same case ids and engines (taken from the base's first run; `--relations none`,
  a phase the base does not have) (target: this tree at least 2x faster). Skipped without --base.
- dask: `--cases random:5000 --dtype float32 --adapters numpy,torch` locally against a Dask LocalCluster
  of 2 single-thread workers on 127.0.0.1 (`--dask`; target: within 1.3x of the local wall), and the rows
  of the two runs compared with timing and host columns left out (they must be identical).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ["--cases", "random:1000", "--dtype", "float32", "--adapters", "numpy,torch"]
DASK_SWEEP = ["--cases", "random:5000", "--dtype", "float32", "--adapters", "numpy,torch"]


def with_cases(argv: list[str], cases: str | None) -> list[str]:
    """argv with another --cases (for a quick try of the script)."""
    return argv if cases is None else [cases if a == argv[1] else a for a in argv]
WHERE_COLUMNS = {"time_ms", "time_min_ms", "time_median_ms", "gflops", "host", "cpu_model", "python",
                 "numpy_version", "refconv_version", "git_commit", "worker", "run_id", "repro"}


def env_for(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_refconv(tree: Path, out: Path, argv: list[str]) -> float:
    """Wall seconds of one `refconv run` in a fresh interpreter started in `tree`."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "refconv", "run", "--out", str(out), "--no-progress", *argv],
                          cwd=tree, env=env_for(tree), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: findings or refconv errors, still a complete run
        raise SystemExit(f"refconv run failed ({done.returncode}) in {tree}: {done.stderr[-2000:]}")
    return wall


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines() if line.strip()]


def adapter_seconds(rows: list[dict[str, Any]]) -> float:
    """Sum over rows of median call time x (repeats + warm-up), in seconds."""
    total = 0.0
    for row in rows:
        ms, repeats = row.get("time_ms"), row.get("repeats")
        if isinstance(ms, float) and ms == ms and isinstance(repeats, int) and repeats > 0:
            total += ms * (repeats + 1) / 1e3
    return total


def reference_seconds(case_ids: list[str]) -> float:
    """Seconds of expected + bound for these cases (input generation excluded), in this process."""
    from refconv import ops
    from refconv.spec import ConvSpec

    total = 0.0
    for case_id in case_ids:
        spec = ConvSpec.from_id(case_id)
        values = ops.inputs(spec)
        start = time.perf_counter()
        ops.reference(spec, values)
        total += time.perf_counter() - start
    return total


def engine_seconds(case_ids: list[str], labels: list[str], repeats: int = 3) -> float:
    """Seconds the adapters' own work takes on these cases, re-timed here in one process: for each case and
    adapter, `ops.bind` (the framework's prepare), the warm-up call and fetch, and `repeats` timed calls
    (what a run asks of the framework; the inputs, generated by the harness, are left out)."""
    import adapters
    from refconv import ops
    from refconv.spec import ConvSpec
    from refconv.worker import apply_env_defaults

    apply_env_defaults()  # OMP_WAIT_POLICY=PASSIVE, as in the run's workers (before torch is imported here)
    total = 0.0
    warnings.simplefilter("ignore")  # the frameworks' warnings are the run's business (warnings.json), not this table's
    for label in labels:
        adapter = adapters.load(label)
        for case_id in case_ids:
            spec = ConvSpec.from_id(case_id)
            values = ops.inputs(spec)
            start = time.perf_counter()
            try:
                if ops.unsupported_reason(adapter, spec) is None:
                    call, fetch = ops.bind(adapter, spec, values)
                    fetch(call())
                    for _ in range(repeats):
                        call()
            except Exception:  # a raising case costs what it costs; the run records it
                pass
            total += time.perf_counter() - start
    return total


def fresh_engine_seconds(case_ids: list[str], labels: list[str], tmp: Path) -> float:
    """`engine_seconds` in a fresh interpreter: a framework's first call of a shape (its set-up) is not cached yet,
    as in a run."""
    ids = tmp / "engine-case-ids.json"
    ids.write_text(json.dumps(case_ids))
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import bench_harness as b; "
            f"print(b.engine_seconds(json.loads(open({str(ids)!r}).read()), {labels!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env_for(ROOT), check=True, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return float(done.stdout.strip().splitlines()[-1])


def import_seconds(labels: list[str], tree: Path = ROOT) -> float:
    """Loading these adapters in a fresh interpreter, minus a bare interpreter that imports refconv."""
    def timed(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=tree, env=env_for(tree), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start

    loads = "; ".join(f"adapters.load({label!r})" for label in labels)
    return max(0.0, timed(f"import adapters, refconv.spec; {loads}") - timed("import adapters, refconv.spec"))


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


Runs = dict[str, list[tuple[float, Path]]]


def interleaved(rounds: int, runs: dict[str, Callable[[Path], float]], tmp: Path) -> Runs:
    """Each named run once per round, the order alternating; {name: [(wall, run dir)]}."""
    out: Runs = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            run_dir = tmp / f"{name}-{r}"
            wall = runs[name](run_dir)
            out[name].append((wall, run_dir))
            print(f"  round {r + 1} {name}: {wall:.2f} s (load {os.getloadavg()[0]:.2f})", flush=True)
    return out


def bench_sweep(rounds: int, tmp: Path) -> None:
    print(f"## sweep: refconv run {' '.join(SWEEP)}, isolated vs --no-isolation, {rounds} rounds", flush=True)
    runs = interleaved(rounds, {"isolated": lambda d: run_refconv(ROOT, d, SWEEP),
                                "in-process": lambda d: run_refconv(ROOT, d, [*SWEEP, "--no-isolation"])}, tmp)
    rows = read_rows(runs["isolated"][0][1])
    case_ids = list(dict.fromkeys(str(r["case_id"]) for r in rows))
    ref = reference_seconds(case_ids)
    passes = [fresh_engine_seconds(case_ids, ["numpy", "torch"], tmp) for _ in range(3)]
    engines = statistics.median(passes)
    imports = statistics.median(import_seconds(["numpy", "torch"]) for _ in range(3))
    print(f"\nre-timed here: reference {ref:.2f} s, engines {engines:.2f} s (bind + warm-up + 3 calls per case and "
          f"adapter; median of {', '.join(f'{p:.2f}' for p in passes)} in 3 fresh interpreters), imports "
          f"{imports:.2f} s (fresh interpreter, median of 3)")
    print("\n| run | round | wall s | calls in rows s | engines s | reference s | imports s | harness s | share |")
    print("|---|---|---|---|---|---|---|---|---|")
    shares: dict[str, list[float]] = {name: [] for name in runs}
    for name, results in runs.items():
        for r, (wall, run_dir) in enumerate(results):
            calls = adapter_seconds(read_rows(run_dir))
            harness = wall - engines - ref - imports
            shares[name].append(100 * harness / wall)
            print(f"| {name} | {r + 1} | {wall:.2f} | {calls:.2f} | {engines:.2f} | {ref:.2f} | {imports:.2f} "
                  f"| {harness:.2f} | {100 * harness / wall:.1f}% |")
    ratios = [a / b for (a, _), (b, _) in zip(runs["isolated"], runs["in-process"], strict=True)]
    print(f"\nisolated / in-process wall, per round: {', '.join(f'{x:.2f}' for x in ratios)}; {spread(ratios)}"
          f" (target <= 1.3)")
    for name, values in shares.items():
        print(f"harness share, {name}: {spread(values)} % (target <= 30 % isolated)")


def bench_report(rounds: int, tmp: Path, base: Path) -> None:
    print(f"\n## report: `refconv run` defaults (tox -e report), {base} vs this tree, {rounds} rounds", flush=True)
    same: list[str] = []  # this tree runs the base's case set and engines (the default selection has grown)

    def run_base(run_dir: Path) -> float:
        wall = run_refconv(base, run_dir, [])
        if not same:
            rows = read_rows(run_dir)
            same.extend(["--cases", ",".join(dict.fromkeys(str(r["case_id"]) for r in rows)), "--adapters",
                         ",".join(dict.fromkeys(str(r["adapter"]) for r in rows)), "--relations", "none"])
        return wall

    runs = interleaved(rounds, {"base": run_base, "this": lambda d: run_refconv(ROOT, d, same)}, tmp)
    for name, results in runs.items():
        rows = read_rows(results[0][1])
        cases, labels = len({r["case_id"] for r in rows}), sorted({r["adapter"] for r in rows})
        print(f"{name}: {cases} cases, {len(rows)} rows, adapters {','.join(labels)}; walls "
              f"{', '.join(f'{w:.1f}' for w, _ in results)} s")
    ratios = [a / b for (a, _), (b, _) in zip(runs["base"], runs["this"], strict=True)]
    print(f"base / this wall, per round: {', '.join(f'{x:.2f}' for x in ratios)}; {spread(ratios)} (target >= 2)")


def comparable(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Rows keyed by (case, adapter, relation), without the columns that say when and where they were made."""
    return {(r["case_id"], r["adapter"], r.get("relation") or ""):
            {k: v for k, v in r.items() if k not in WHERE_COLUMNS} for r in rows}


def bench_dask(rounds: int, tmp: Path) -> None:
    import dask
    import distributed

    print(f"\n## dask: refconv run {' '.join(DASK_SWEEP)}, local vs a 2-worker LocalCluster, {rounds} rounds",
          flush=True)
    settings = {"distributed.worker.daemon": False,  # adapter workers are child processes of the Dask workers
                **{f"distributed.nanny.pre-spawn-environ.{v}": None
                   for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    environ = dict(os.environ)
    with dask.config.set(settings):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None)
        try:
            runs = interleaved(rounds, {
                "local": lambda d: run_refconv(ROOT, d, DASK_SWEEP),
                "dask": lambda d: run_refconv(ROOT, d, [*DASK_SWEEP, "--dask", cluster.scheduler_address]),
            }, tmp)
        finally:
            cluster.close()
            os.environ.clear()
            os.environ.update(environ)
    ratios = [b / a for (a, _), (b, _) in zip(runs["local"], runs["dask"], strict=True)]
    print(f"dask / local wall, per round: {', '.join(f'{x:.2f}' for x in ratios)}; {spread(ratios)} (target <= 1.3)")
    local, remote = comparable(read_rows(runs["local"][0][1])), comparable(read_rows(runs["dask"][0][1]))
    cases_local = {k: v for k, v in local.items() if not k[2]}  # case rows; relation rows (relation != '') apart
    differing = [k for k in cases_local if cases_local[k] != remote.get(k)]
    print(f"case rows: local {len(cases_local)}, dask {sum(1 for k in remote if not k[2])}; identical apart from "
          f"timing and host columns: {not differing and len(cases_local) == len(remote)} ({len(differing)} differ); "
          f"relation rows: local {len(local) - len(cases_local)}, dask {sum(1 for k in remote if k[2])}")
    for key in differing[:10]:  # which rows, and in what: an engine's nondeterminism shows here, not refconv's
        mine, other = cases_local[key], remote.get(key, {})
        columns = {c: (mine[c], other.get(c)) for c in mine if mine[c] != other.get(c)}
        print(f"  differs: {key[0]} {key[1]}: " + "; ".join(f"{c} local {a!s:.40} dask {b!s:.40}"
                                                            for c, (a, b) in columns.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="sweep,report,dask", help="comma-separated: sweep, report, dask")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", type=Path, default=None, help="an older source tree for the report comparison")
    parser.add_argument("--sweep-cases", default=None, help="another --cases for sweep (default random:1000)")
    parser.add_argument("--dask-cases", default=None, help="another --cases for dask (default random:5000)")
    args = parser.parse_args()
    global SWEEP, DASK_SWEEP
    SWEEP, DASK_SWEEP = with_cases(SWEEP, args.sweep_cases), with_cases(DASK_SWEEP, args.dask_cases)
    only = set(args.only.split(","))
    print(f"cpu cores: {os.cpu_count()}; load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        if "sweep" in only:
            bench_sweep(args.rounds, Path(tmp))
        if "report" in only and args.base is not None:
            bench_report(args.rounds, Path(tmp), args.base.resolve())
        if "dask" in only:
            bench_dask(args.rounds, Path(tmp))
    print("\nload average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
