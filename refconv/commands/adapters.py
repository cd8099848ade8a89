"""List every known adapter: available or why not, its version, and a capability matrix.

The matrix is not written by hand: each adapter is loaded in a process of its own (frameworks are
never imported in this process) and its `supports()` is asked about one representative spec per
capability (adapters/capabilities.py). 'yes' = accepted, 'no' = declined (reasons listed below the
table), '-' = adapter unavailable here. Each engine also says which kernels it dispatches to (`isa`, its
general answer: rows record each case's) and on what CPU (`cpu_features`, refconv.hardware; docs/hardware.md).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "list adapters: availability, version, capability matrix (probed in subprocesses)"

SHORT = {
    "float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16", "NCHW": "nchw",
    "channels_last": "cl", "stride": "stride", "dilation": "dil", "dilation+same": "dil+same",
    "dilation+stride": "dil+s", "groups": "grp", "depthwise": "dw", "explicit_pads": "pads", "relu": "relu",
    "no_bias": "nobias", "empty_output": "empty",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="adapters to list, e.g. tf torch:layout=channels_last (default: all known)")
    p.add_argument("--json", action="store_true", help="print one JSON object per adapter instead of the table")
    p.add_argument("--settings", action="store_true", help="also print each adapter's precision/threading settings")
    p.add_argument("--jobs", type=int, default=2, help="processes probing at once (default 2)")


def collect(labels: list[str], jobs: int = 2) -> list[dict[str, Any]]:
    """describe() every label, each in a fresh spawned process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from adapters.capabilities import describe

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=context, max_tasks_per_child=1) as pool:
        return list(pool.map(describe, labels))


def render(results: list[dict[str, Any]], settings: bool = False) -> str:
    """The readable table, then the reasons behind every 'no' and every unavailable adapter."""
    from adapters.capabilities import CAPABILITIES

    caps = list(CAPABILITIES)
    name_w = max(len("adapter"), *(len(r["adapter"]) for r in results))
    ver_w = min(40, max(len("version"), *(len(r["version"]) for r in results)))
    isa_w = max(len("isa"), *(len(r.get("isa", "")) for r in results))
    head = (f"{'adapter':<{name_w}}  {'available':<9}  {'version':<{ver_w}}  {'isa':<{isa_w}}  "
            + " ".join(SHORT[c] for c in caps))
    lines = [head, "-" * len(head)]
    notes: list[str] = []
    for r in results:
        cells = []
        for c in caps:
            width = len(SHORT[c])
            if not r["available"]:
                cells.append("-".center(width))
                continue
            reason = r["capabilities"].get(c)
            cells.append(("yes" if reason is None else "no").center(width))
            if reason is not None:
                notes.append(f"  {r['adapter']} / {c}: {reason}")
        avail = "yes" if r["available"] else "no"
        lines.append(f"{r['adapter']:<{name_w}}  {avail:<9}  {r['version'][:ver_w]:<{ver_w}}  "
                     f"{r.get('isa', ''):<{isa_w}}  " + " ".join(cells))
    unavailable = [f"  {r['adapter']}: {r['reason']}" for r in results if not r["available"]]
    if unavailable:
        lines += ["", "unavailable:", *unavailable]
    if notes:
        lines += ["", "declined (supports() reasons):", *notes]
    if settings:
        lines += ["", "settings:"] + [f"  {r['adapter']}: {json.dumps(r['settings'], default=str)}"
                                      for r in results if r["available"]]
    lines += ["", *_cpu_lines(results)]
    lines += ["", "columns: isa=the kernels the engine dispatches to (docs/hardware.md), "
              + ", ".join(f"{SHORT[c]}={c}" for c in caps)]
    return "\n".join(lines)


def _cpu_lines(results: list[dict[str, Any]]) -> list[str]:
    """cpu_features once when every engine saw the same CPU (one machine), else per engine."""
    seen = {r.get("cpu_features", "") for r in results}
    if len(seen) == 1:
        return [f"cpu_features: {seen.pop() or '(unknown)'}"]
    return ["cpu_features:"] + [f"  {r['adapter']}: {r.get('cpu_features', '') or '(unknown)'}" for r in results]


def main(args: argparse.Namespace) -> int:
    import adapters

    labels = [adapters.parse(n).label for n in args.names] if args.names else list(adapters.known())
    for label in labels:
        adapters.unavailable_reason(label)  # an unknown name fails here, in one line, before any process starts
    results = collect(labels, args.jobs)
    if args.json:
        for r in results:
            r.pop("traceback", None)
            print(json.dumps(r, default=str))
    else:
        print(render(results, args.settings))
    return 0
