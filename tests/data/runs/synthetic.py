"""A synthetic run of any size for report tests (scale, escaping, browser): rows are made up, clearly so.

Cases are real (refconv.cases.random_cases, so ids, geometry, K and FLOPs are consistent); outcomes,
errors and timings are drawn from a seeded generator, with hostile strings in error messages to prove
HTML escaping. Never used as evidence about a framework.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from refconv import deviations
from refconv.cases import edge_cases, random_cases
from refconv.compare import TOLERANCE_C
from refconv.rows import COLUMNS, case_columns

ADAPTERS = ("numpy", "tf", "tf:onednn=off", "torch")
HOSTILE = "<script>alert('x')</script> & \"quoted\" </td></table>"


def synthetic_rows(n_rows: int, seed: int = 0, run_id: str = "synthetic") -> pd.DataFrame:
    """About n_rows rows: cases x ADAPTERS, seeded."""
    rng = np.random.default_rng(seed)
    n_cases = max(1, n_rows // len(ADAPTERS))
    specs = (edge_cases() + random_cases(n_cases, seed=seed))[:n_cases]
    rows = []
    for spec in specs:
        case = case_columns(spec)
        for adapter in ADAPTERS:
            rows.append(_row(rng, run_id, case, adapter))
    return pd.DataFrame(rows).reindex(columns=list(COLUMNS))


def _row(rng: np.random.Generator, run_id: str, case: dict[str, object], adapter: str) -> dict[str, object]:
    c = TOLERANCE_C[str(case["dtype"])]
    n_elements = int(case["n"]) * int(case["out_h"]) * int(case["out_w"]) * int(case["c_out"])  # type: ignore[call-overload]
    row: dict[str, object] = {"run_id": run_id, **case, "adapter": adapter, "adapter_version": "9.9-synthetic",
                              "tolerance_c": c, "settings": json.dumps({"synthetic": True}), "repro": "",
                              "expected_shape": f"{case['n']}x{case['out_h']}x{case['out_w']}x{case['c_out']}",
                              "n_elements": n_elements,
                              "error": "", "mismatched": 0, "repeats": 3}
    draw = rng.random()
    if case["empty_output"] and adapter != "numpy":
        row.update(outcome="raised", error=f"Computed output size would be negative: {HOSTILE}")
    elif adapter == "torch" and case["layout"] == "NCHW" and draw < 0.5:
        row.update(outcome="unsupported", error="synthetic: NCHW declined")
    elif draw < 0.02 and adapter != "numpy":
        ratio = c * 10 ** rng.uniform(0.5, 4)
        row.update(outcome="mismatch", bound_ratio=ratio, max_abs_err=ratio * 1e-7, max_rel_err=ratio * 1e-6,
                   max_ulp=ratio * 3, mismatched=1)
    elif draw < 0.025 and adapter != "numpy":
        row.update(outcome="crashed", error=f"worker died with signal 11 (SIGSEGV) {HOSTILE}")
    elif draw < 0.03 and adapter != "numpy":
        row.update(outcome="wrong_shape", actual_shape="1x1x1x1", error="got shape (1, 1, 1, 1)")
    else:
        ratio = float(10 ** rng.normal(-0.5, 0.4))
        row.update(outcome="pass", bound_ratio=ratio, max_abs_err=ratio * 1e-7, max_rel_err=ratio * 1e-6,
                   max_ulp=ratio * 3)
    if row["outcome"] in ("pass", "mismatch"):
        median = float(case["flops"]) / (1e6 * 10 ** rng.uniform(0, 1.5)) + 0.005  # type: ignore[arg-type]
        row.update(time_ms=median, time_median_ms=median, time_min_ms=median * rng.uniform(0.7, 1.0),
                   gflops=float(case["flops"]) / (median * 1e6))  # type: ignore[arg-type]
    if row["outcome"] not in ("pass", "unsupported"):
        row["repro"] = f"repro/{case['case_id']}__{str(adapter).replace(':', '_').replace('=', '-')}.py"
    row["known_deviation"] = deviations.match(row)
    return row


def write_synthetic_run(run_dir: Path, n_rows: int, seed: int = 0) -> Path:
    """A run directory with results.parquet, results.csv and provenance.json of synthetic rows."""
    run_dir.mkdir(parents=True, exist_ok=True)
    df = synthetic_rows(n_rows, seed, run_id=run_dir.name)
    df.to_parquet(run_dir / "results.parquet", index=False)
    df.to_csv(run_dir / "results.csv", index=False)
    provenance = {"refconv": "0.1.0", "synthetic": True, "cpu": {"model": "synthetic CPU", "flags": "sse " * 120},
                  "versions": {a: "9.9-synthetic" for a in ADAPTERS}, "threads": {"OMP_NUM_THREADS": "1"},
                  "command": f"refconv run --cases random:{n_rows // len(ADAPTERS)} (synthetic)"}
    (run_dir / "provenance.json").write_text(json.dumps(provenance))
    (run_dir / "run.json").write_text(json.dumps({"cases": "synthetic", "seed": seed}))
    return run_dir
