"""Build the two small stored runs the report and compare tests read: `base` and `regressed`.

    PYTHONPATH=. python tests/data/runs/make_runs.py

Rows come from the real numpy adapter compared with the reference (rows.case_columns + Comparison).
`regressed` is `base` with ONE planted regression: the output of PLANTED_CASE is perturbed by 1e-3
before the comparison, as a broken framework upgrade would do, so that pair goes pass -> mismatch.
Timings are synthetic (a fixed 2 GFLOP/s model) so the stored runs are deterministic and no timing
regression appears by accident; the timing logic is tested on DataFrames built in the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from adapters.numpy_ref import NumpyAdapter
from refconv import deviations
from refconv.compare import compare
from refconv.inputs import make_inputs
from refconv.reference import for_spec
from refconv.rows import COLUMNS, case_columns
from refconv.spec import ConvSpec

HERE = Path(__file__).parent
CASES = [
    "n1-5x5x3-k1x1x4-s1x1-same-f32", "n1-4x4x1-k2x2x1-s2x2-same-f32", "n1-6x6x2-k3x3x2-s2x2-same-f32",
    "n1-7x7x2-k4x4x3-s1x1-same-f32", "n2-9x5x3-k3x2x4-s2x1-same-f32", "n1-2x2x1-k3x3x1-s1x1-valid-f32",
    "n1-8x8x4-k3x3x4-s1x1-same-f64-d2x2", "n1-8x8x4-k3x3x8-s1x1-valid-f16-g4", "n1-6x6x2-k3x3x2-s1x1-same-bf16",
    "n1-6x6x3-k3x3x3-s1x1-p1_0x0_2-f32-relu", "n1-5x5x2-k3x3x2-s1x1-same-f32-cl",
    "n1-10x10x8-k5x5x8-s2x2-same-f32-nchw",
]
PLANTED_CASE = "n1-6x6x2-k3x3x2-s2x2-same-f32"


def rows(run_id: str, plant: bool) -> list[dict[str, object]]:
    adapter = NumpyAdapter()
    out = []
    for case_id in CASES:
        spec = ConvSpec.from_id(case_id)
        row: dict[str, object] = {"run_id": run_id, **case_columns(spec), "adapter": "numpy",
                                  "adapter_version": adapter.version(), "settings": json.dumps(adapter.settings()),
                                  "repro": "", "repeats": 3}
        reason = adapter.supports(spec)
        if reason:
            row.update(outcome="unsupported", error=reason, expected_shape="", actual_shape="")
        else:
            x, w, b = make_inputs(spec)
            expected, bound = for_spec(spec, x, w, b)
            actual = adapter.conv2d(x, w, b, spec)
            if plant and case_id == PLANTED_CASE:
                actual = actual + np.asarray(1e-3, dtype=actual.dtype)
            row.update(compare(spec, expected, bound, actual).as_row())
            median = int(row["flops"]) / 2e6 + 0.01  # ms at 2 GFLOP/s, synthetic (see docstring)
            row.update(time_ms=median, time_median_ms=median, time_min_ms=0.9 * median,
                       gflops=int(row["flops"]) / (median * 1e6))
        row["known_deviation"] = deviations.match(row)
        out.append(row)
    return out


def write(name: str, plant: bool) -> None:
    run_dir = HERE / name
    run_dir.mkdir(exist_ok=True)
    df = pd.DataFrame(rows(name, plant)).reindex(columns=list(COLUMNS))
    df.to_csv(run_dir / "results.csv", index=False)
    provenance = {"refconv": "0.1.0", "fixture": "tests/data/runs/make_runs.py", "numpy": np.__version__,
                  "adapters": {"numpy": {"version": np.__version__}}, "cpu": "fixture",
                  "started_utc": "2026-01-01T00:00:00Z"}
    (run_dir / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    (run_dir / "run.json").write_text(json.dumps({"cases": ",".join(CASES), "adapters": ["numpy"]}, indent=1) + "\n")


if __name__ == "__main__":
    write("base", plant=False)
    write("regressed", plant=True)
