"""Share of a sweep's wall time spent inside convolutions rather than in the harness (issue 8, item 6).

Run from the repository root:
  PYTHONPATH=. python benchmarks/bench_harness.py [--cases random:1000] [--adapters numpy,torch] [--keep DIR]

It runs `python -m refconv run` in a subprocess and takes its wall time (start-up, workers, imports
and writing included). Convolution time is
- the adapters' calls: each row's median time_ms x (repeats + 1 warm-up call), summed;
- the reference: expected + bound (`reference.for_spec` on `make_inputs`) for the same cases,
  re-timed here in one process (the runner computes them in its main process, untimed).
The rest is the harness: process start, framework imports, input generation, IPC, comparison, files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from refconv.inputs import make_inputs
from refconv.reference import for_spec
from refconv.spec import ConvSpec


def run_sweep(cases: str, adapters: str, out: Path, extra: list[str] | None = None) -> float:
    """Wall seconds of one `refconv run` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "refconv", "run", "--cases", cases, "--adapters", adapters,
                    "--out", str(out), "--no-progress", *(extra or [])], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def adapter_seconds(rows: list[dict[str, object]]) -> dict[str, float]:
    """Per adapter: sum of median call time x (repeats + warm-up), in seconds."""
    out: dict[str, float] = {}
    for row in rows:
        ms, repeats = row.get("time_ms"), row.get("repeats")
        if isinstance(ms, float) and ms == ms and isinstance(repeats, int) and repeats > 0:
            out[str(row["adapter"])] = out.get(str(row["adapter"]), 0.0) + ms * (repeats + 1) / 1e3
    return out


def reference_seconds(case_ids: list[str]) -> float:
    """Seconds of expected + bound for these cases (input generation excluded)."""
    total = 0.0
    for case_id in case_ids:
        spec = ConvSpec.from_id(case_id)
        x, w, b = make_inputs(spec)
        start = time.perf_counter()
        for_spec(spec, x, w, b)
        total += time.perf_counter() - start
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="random:1000")
    parser.add_argument("--adapters", default="numpy,torch")
    parser.add_argument("--dtype", default=None, help="run every case in this dtype (refconv run --dtype)")
    parser.add_argument("--keep", type=Path, help="run directory to keep (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "run"
        wall = run_sweep(args.cases, args.adapters, out, ["--dtype", args.dtype] if args.dtype else None)
        rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines() if line.strip()]
    case_ids = list(dict.fromkeys(str(r["case_id"]) for r in rows))
    per_adapter = adapter_seconds(rows)
    ref = reference_seconds(case_ids)
    conv = ref + sum(per_adapter.values())
    print(f"sweep: --cases {args.cases} --adapters {args.adapters}: {len(case_ids)} cases, {len(rows)} rows")
    print("| part | seconds | share of wall |")
    print("|---|---|---|")
    print(f"| wall (whole `refconv run`) | {wall:.2f} | 100% |")
    print(f"| reference (expected + bound) | {ref:.2f} | {100 * ref / wall:.1f}% |")
    for name, seconds in sorted(per_adapter.items()):
        print(f"| {name} calls (repeats + warm-up) | {seconds:.2f} | {100 * seconds / wall:.1f}% |")
    print(f"| all convolutions | {conv:.2f} | {100 * conv / wall:.1f}% |")
    print(f"| harness (the rest) | {wall - conv:.2f} | {100 * (wall - conv) / wall:.1f}% |")
    print("load average: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
