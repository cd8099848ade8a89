"""Measure bound ratios of correct and precision-dropping convolutions, to choose TOLERANCE_C per dtype.

Runs the numpy, tf and torch adapters in this process (a measurement tool, not the runner) over the seeded
random sweep plus large-reduction cases, and two deliberately lossy convolutions:
- "own-type accumulation": every multiply-add rounded to the case dtype (what a careless 16-bit kernel does);
- "reduced inputs": inputs rounded to a narrower format first (TF32's 10-bit mantissa for float32/float64
  cases, bfloat16 for float16 cases), what a precision mode that silently drops bits does.
Prints a markdown table of median / p99 / max bound ratio per (engine, dtype). Usage:
    python tools/measure_tolerance.py [N_RANDOM]
    python tools/measure_tolerance.py --ops [N_RANDOM]   # the training ops: grad_input, grad_filter, transpose
With --ops the engines are tf, torch and jax (each op through the adapter's method) plus "lossy: reduced
inputs" (the reference of the op on narrowed inputs), and the table has one row per (op, engine, dtype).
"""

from __future__ import annotations

import sys
from collections import defaultdict

import ml_dtypes
import numpy as np

import adapters
from refconv import cases, compare
from refconv.inputs import make_inputs, np_dtype
from refconv.padding import geometry
from refconv.reference import for_spec
from refconv.spec import ConvSpec

LARGE_K = [
    ConvSpec(n=1, h=10, w=10, c_in=c, c_out=8, kh=k, kw=k, dtype=d, seed=s)
    for c in (64, 128, 256) for k in (3, 5) for d in ("float16", "bfloat16", "float32", "float64") for s in (1, 2)
]


def own_type_accumulation(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Every multiply-add rounded to the case dtype, one kernel tap and channel at a time."""
    dt = np_dtype(spec.dtype)
    rows, cols = geometry(spec)
    xp = np.pad(x.astype(np.float64), ((0, 0), (rows.before, rows.after), (cols.before, cols.after), (0, 0)))
    (sh, sw), (dh, dw) = spec.strides, spec.dilations
    cg, og = spec.c_in // spec.groups, spec.c_out // spec.groups
    acc = np.zeros((spec.n, rows.out, cols.out, spec.c_out), dtype=dt)
    if acc.size == 0:
        return acc
    for i in range(spec.kh):
        for j in range(spec.kw):
            patch = xp[:, i * dh: i * dh + (rows.out - 1) * sh + 1: sh, j * dw: j * dw + (cols.out - 1) * sw + 1: sw]
            for c in range(cg):
                for o in range(spec.c_out):
                    term = patch[..., (o // og) * cg + c] * float(w[i, j, c, o])
                    acc[..., o] = (acc[..., o].astype(np.float64) + term).astype(dt)
    out = acc.astype(np.float64) + (0 if b is None else b.astype(np.float64))
    if spec.activation == "relu":
        out = np.maximum(out, 0)
    return out.astype(dt)


def reduced_inputs(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    narrow = ml_dtypes.bfloat16 if spec.dtype == "float16" else ml_dtypes.float8_e4m3fn
    if spec.dtype in ("float32", "float64"):
        def narrow_fn(a: np.ndarray) -> np.ndarray:  # TF32: keep 10 mantissa bits
            bits = a.astype(np.float32).view(np.uint32) & np.uint32(0xFFFFE000)
            return bits.view(np.float32).astype(np.float64)
    else:
        def narrow_fn(a: np.ndarray) -> np.ndarray:
            return a.astype(narrow).astype(np.float64)
    out, _ = for_spec(spec, narrow_fn(x), narrow_fn(w), b)
    return out.astype(np_dtype(spec.dtype))


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    specs = [s.replace(layout="NHWC") for s in cases.random_cases(count, seed=11)] + LARGE_K
    engines = {name: adapters.load(name) for name in ("numpy", "tf", "torch")}
    ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
    for spec in specs:
        x, w, b = make_inputs(spec)
        expected, bound = for_spec(spec, x, w, b)
        if expected.size == 0:
            continue
        outs = {"lossy: own-type accumulation": None, "lossy: reduced inputs": reduced_inputs(spec, x, w, b)}
        if spec.dtype in ("float16", "bfloat16") and spec.reduction_length * expected.size <= 2_000_000:
            outs["lossy: own-type accumulation"] = own_type_accumulation(spec, x, w, b)
        for name, engine in engines.items():
            if engine.supports(spec):
                continue
            try:
                outs[name] = engine.conv2d(x, w, b, spec)
            except Exception:  # raised rows are not rounding data
                continue
        for name, out in outs.items():
            if out is None:
                continue
            c = compare.compare(spec, expected, bound, out, c=float("inf"))
            if c.outcome == "pass":
                ratios[(name, spec.dtype)].append(c.bound_ratio)
    print("| engine | dtype | cases | median | p99 | max | base C |")
    print("|---|---|---|---|---|---|---|")
    for (name, dtype), values in sorted(ratios.items()):
        v = np.array(values)
        print(f"| {name} | {dtype} | {len(v)} | {np.median(v):.3g} | {np.percentile(v, 99):.3g} | {v.max():.3g} "
              f"| {compare.TOLERANCE_C[dtype]:g} |")


TRAINING_OPS = ("grad_input", "grad_filter", "transpose")
# long sums for the filter gradient (n * ho * wo up to 8,192 terms) and wide channel sums for the input gradient
LARGE_OPS = [
    ConvSpec(n=n, h=hw, w=hw, c_in=c, c_out=co, kh=3, kw=3, dtype=d, seed=s, bias=False)
    for n, hw, c, co in ((8, 32, 4, 4), (2, 24, 8, 128), (4, 16, 64, 64)) for d in ("float16", "bfloat16", "float32",
                                                                                   "float64") for s in (1, 2)
]


def _narrow(spec: ConvSpec, a: np.ndarray) -> np.ndarray:
    if spec.dtype in ("float32", "float64"):  # TF32: keep 10 mantissa bits
        return (a.astype(np.float32).view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32).astype(np.float64)
    return a.astype(ml_dtypes.bfloat16 if spec.dtype == "float16" else ml_dtypes.float8_e4m3fn).astype(np.float64)


def main_ops(count: int) -> None:
    from refconv import ops

    base = [s.replace(layout="NHWC", activation=None) for s in cases.random_cases(count, seed=11)] + LARGE_OPS
    engines = {name: adapters.load(name) for name in ("tf", "torch", "jax")}
    ratios: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for forward in base:
        for op in TRAINING_OPS:
            spec = forward.replace(op=op)
            if 0 in geometry(spec)[0][:1] + geometry(spec)[1][:1]:  # an empty forward output is not rounding data
                continue  # (and tf's filter gradient of one returns uninitialized memory or crashes: docs/training.md)
            values = ops.inputs(spec)
            expected, bound = ops.reference(spec, values)
            lossy, _ = ops.reference(spec, tuple(_narrow(spec, v) for v in values))
            outs: dict[str, np.ndarray] = {"lossy: reduced inputs": lossy.astype(np_dtype(spec.dtype))}
            for name, engine in engines.items():
                if ops.unsupported_reason(engine, spec):
                    continue
                try:
                    call, fetch = ops.bind(engine, spec, values)
                    outs[name] = fetch(call())
                except Exception:  # raised rows are not rounding data
                    continue
            for name, out in outs.items():
                c = compare.compare(spec, expected, bound, out, c=float("inf"))
                if c.outcome == "pass":
                    ratios[(op, name, spec.dtype)].append(c.bound_ratio)
    from refconv.op_tolerance import OP_TOLERANCE_C

    print("| op | engine | dtype | cases | median | p99 | max | base C |")
    print("|---|---|---|---|---|---|---|---|")
    for (op, name, dtype), values in sorted(ratios.items()):
        v = np.array(values)
        print(f"| {op} | {name} | {dtype} | {len(v)} | {np.median(v):.3g} | {np.percentile(v, 99):.3g} "
              f"| {v.max():.3g} | {OP_TOLERANCE_C[op][dtype]:g} |")


if __name__ == "__main__":
    if "--ops" in sys.argv:
        sys.argv.remove("--ops")
        main_ops(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
    else:
        main()
