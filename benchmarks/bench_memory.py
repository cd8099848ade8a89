"""Peak memory of the reference on a large case, each measurement in a fresh interpreter.

Run from the repository root:  PYTHONPATH=. python benchmarks/bench_memory.py [--n 16 --size 224 --c 64]

Method. A child process imports numpy and refconv, then reads its peak resident set size
(resource.getrusage ru_maxrss, the kernel's high-water mark) as the interpreter baseline. It draws
x (N, H, W, C) and w in float64, runs the measured call once, and reads the high-water mark again.
"extra peak" = final mark - baseline: every byte the process ever held at once beyond the interpreter,
inputs and outputs included. The case passes when extra peak < 1.5 x (bytes of inputs + outputs).
A second child repeats the call under tracemalloc (which NumPy reports its buffers to), giving the
peak of Python-visible allocations beyond inputs and outputs: the chunk buffers alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

LIMIT = 1.5

CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
import refconv.reference as reference
from refconv.spec import ConvSpec

def peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

mode, n, size, c, traced = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5] == "1"
baseline = peak_bytes()
rng = np.random.default_rng(0)
x = rng.standard_normal((n, size, size, c))  # float64, drawn straight into its own buffer
w = rng.standard_normal((3, 3, c, c))
b = rng.standard_normal(c)
if traced:
    tracemalloc.start()
start = time.perf_counter()
if mode == "conv2d":
    outs = [reference.conv2d(x, w, b, padding="SAME")]
else:
    spec = ConvSpec(n=n, h=size, w=size, c_in=c, c_out=c, kh=3, kw=3, padding="SAME", dtype="float64")
    outs = list(reference.for_spec(spec, x, w, b))
seconds = time.perf_counter() - start
traced_peak = tracemalloc.get_traced_memory()[1] if traced else 0
print(json.dumps(dict(baseline=baseline, peak=peak_bytes(), inputs=x.nbytes + w.nbytes + b.nbytes,
                      outputs=sum(o.nbytes for o in outs), traced_peak=traced_peak, seconds=seconds)))
"""


def measure(mode: str, n: int, size: int, c: int, traced: bool) -> dict[str, float]:
    """Run one measurement in a fresh interpreter and return its record."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(n), str(size), str(c), "1" if traced else "0"],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--c", type=int, default=64)
    args = parser.parse_args()
    mib = 2**20
    print(f"case: N={args.n}, {args.size}x{args.size}, c_in=c_out={args.c}, 3x3, stride 1, SAME, float64")
    print("| call | inputs + outputs MiB | baseline MiB | extra peak RSS MiB | extra / (in + out) | "
          "traced beyond in + out MiB | seconds | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    failed = False
    for mode in ("conv2d", "for_spec"):
        rss = measure(mode, args.n, args.size, args.c, traced=False)
        traced = measure(mode, args.n, args.size, args.c, traced=True)
        data = rss["inputs"] + rss["outputs"]
        extra = rss["peak"] - rss["baseline"]
        ratio = extra / data
        verdict = "pass" if ratio < LIMIT else f"FAIL (>= {LIMIT})"
        failed |= mode == "conv2d" and ratio >= LIMIT
        print(f"| {mode} | {data / mib:.0f} | {rss['baseline'] / mib:.0f} | {extra / mib:.0f} | {ratio:.3f} | "
              f"{(traced['traced_peak'] - traced['outputs']) / mib:.1f} | {rss['seconds']:.2f} | {verdict} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
