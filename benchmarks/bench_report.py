"""Time rendering the reports of a synthetic run (summary.md and report.html), min and median over repeats.

    PYTHONPATH=. python benchmarks/bench_report.py --rows 20000 --repeats 3

Replaces a timed test: rendering time is measured here, where a loaded machine only widens the spread.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def synthetic_module():  # type: ignore[no-untyped-def]
    path = ROOT / "tests" / "data" / "runs" / "synthetic.py"
    spec = importlib.util.spec_from_file_location("refconv_synthetic_runs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from refconv.report import write_reports

    with tempfile.TemporaryDirectory() as tmp:
        run = synthetic_module().write_synthetic_run(Path(tmp) / "run", args.rows)
        times, size = [], 0
        for _ in range(args.repeats):
            start = time.perf_counter()
            paths = write_reports(run)
            times.append(time.perf_counter() - start)
            size = paths[1].stat().st_size
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.rows} rows: render min {min(times):.2f} s, median {statistics.median(times):.2f} s "
          f"over {len(times)}; report.html {size / 1e3:.0f} kB; load average {load:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
