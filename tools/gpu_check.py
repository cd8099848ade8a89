"""Exercise the GPU adapters on a CUDA machine: one short, prepared run for a lent device.

    python tools/gpu_check.py                  # GPU labels, edge corpus + 40 random cases, JSON to $OUT or ./
    python tools/gpu_check.py --labels torch,jax --random 5   # the same on CPU adapters (a dry run)

Each label runs in its own spawned process (TF32 and precision switches are process-wide). For each it
prints availability, version, settings, the outcome counts, the worst passing bound ratio, and every
non-passing case with its message; the whole record goes to gpu_check.json. It never widens a tolerance:
a float32 mismatch under TF32 is exactly what the check is meant to show.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GPU_LABELS = ("torch-cuda", "torch-cuda:tf32=off", "torch-cuda:tf32=on", "jax-gpu", "jax-gpu:precision=highest")


def check(label: str, random_count: int, seed: int) -> dict[str, Any]:
    """Every case through one adapter; runs in a worker process."""
    import adapters
    from refconv.cases import edge_cases, random_cases
    from refconv.compare import Comparison, compare
    from refconv.inputs import make_inputs
    from refconv.reference import for_spec

    out: dict[str, Any] = {"adapter": label, "available": False}
    reason = adapters.unavailable_reason(label)
    if reason:
        return {**out, "reason": reason}
    adapter = adapters.load(label)
    out.update(available=True, version=adapter.version(), settings=adapter.settings())
    counts: Counter[str] = Counter()
    failures, worst, start = [], 0.0, time.perf_counter()
    for spec in edge_cases() + random_cases(random_count, seed):
        declined = adapter.supports(spec)
        if declined:
            counts["unsupported"] += 1
            continue
        x, w, b = make_inputs(spec)
        expected, bound = for_spec(spec, x, w, b)
        try:
            result = compare(spec, expected, bound, adapter.conv2d(x, w, b, spec))
        except Exception as exc:  # noqa: BLE001 - a framework error is the outcome 'raised'
            result = Comparison("raised", tuple(expected.shape), None, error=f"{type(exc).__name__}: {exc}"[:300])
        counts[result.outcome] += 1
        if result.outcome == "pass":
            worst = max(worst, result.bound_ratio)
        else:
            failures.append(result.message(label, spec))
    out.update(counts=dict(counts), worst_pass_bound_ratio=worst, failures=failures,
               seconds=round(time.perf_counter() - start, 2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=",".join(GPU_LABELS), help="comma-separated adapter labels")
    parser.add_argument("--random", type=int, default=40, help="random cases besides the edge corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_check.json")
    args = parser.parse_args(argv)
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1) as pool:
        results = list(pool.map(check, labels, [args.random] * len(labels), [args.seed] * len(labels)))
    for r in results:
        if not r["available"]:
            print(f"{r['adapter']}: unavailable: {r['reason']}")
            continue
        print(f"{r['adapter']}  {r['version']}  {r['seconds']}s  {r['counts']}  "
              f"worst passing bound ratio {r['worst_pass_bound_ratio']:.3g}")
        print(f"  settings {json.dumps(r['settings'], default=str)}")
        for line in r["failures"]:
            print(f"  {line}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
