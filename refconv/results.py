"""From answers to stored rows: the row of each (case, adapter) answer, its repro script, and warnings.json.

Pure bookkeeping in the main process, which owns the run directory: `build_rows` turns a CaseResult into
rows in `refconv.rows.COLUMNS` terms, `finish_rows` adds known deviations and writes a repro script for
every finding, and `WarningLog` counts the Python warnings the adapters' workers raised (one entry per
adapter, category and message: its count and the first case that raised it), kept in warnings.json.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refconv import deviations, ops, repro, repro_hardware, witness
from refconv.batch import CaseResult
from refconv.rows import case_columns, flops
from refconv.spec import ConvSpec
from refconv.store import write_json

NO_REPRO = ("pass", "unsupported")
WARNINGS_FILE = "warnings.json"


def timing_columns(spec: ConvSpec, times_ms: list[float]) -> dict[str, Any]:
    """time_ms (= median), min, median, repeats and GFLOP/s at the median; NaN without timings."""
    if not times_ms:
        nan = float("nan")
        return {"time_ms": nan, "time_min_ms": nan, "time_median_ms": nan, "repeats": 0, "gflops": nan}
    median = statistics.median(times_ms)
    return {
        "time_ms": median, "time_min_ms": min(times_ms), "time_median_ms": median, "repeats": len(times_ms),
        "gflops": flops(spec) / (median * 1e6) if median > 0 else float("nan"),
    }


@dataclass
class RowContext:
    """What every row of a run shares: run id, adapter versions and settings, provenance columns."""

    run_id: str
    adapter_info: dict[str, dict[str, Any]]
    provenance_columns: dict[str, Any]


def build_rows(result: CaseResult, ctx: RowContext) -> list[dict[str, Any]]:
    """One row per answer, in rows.COLUMNS terms (repro and known_deviation filled by `finish_rows`)."""
    case = case_columns(result.spec)
    rows = []
    for answer in result.answers:
        info = result.adapter_info.get(answer.label) or ctx.adapter_info.get(answer.label, {})
        row: dict[str, Any] = {"run_id": ctx.run_id, **case, "adapter": answer.label, "relation": "",
                               "adapter_version": info.get("version", "")}
        row.update(answer.comparison.as_row())
        row.update(timing_columns(result.spec, answer.times_ms))
        row["settings"] = json.dumps(info.get("settings", {}), sort_keys=True)
        row["isa"] = answer.isa or info.get("isa", "")
        row["repro"] = ""
        row["known_deviation"] = ""
        row.update(ctx.provenance_columns)
        row.update(result.where)  # the host that ran the case, where it differs from this one
        rows.append(row)
    return rows


def finish_rows(run_dir: Path, result: CaseResult, rows: list[dict[str, Any]]) -> None:
    """Known deviations for every row; a repro script (and the inputs) for every finding."""
    inputs = None
    for answer, row in zip(result.answers, rows, strict=True):
        # a witnessed entry explains the row only where its witness holds on this very case
        row["known_deviation"] = deviations.explain(
            row, witness.CaseWitness(witness.shared(), result.spec, answer.label, actual=answer.actual))
        if row["outcome"] in NO_REPRO:
            continue
        inputs = inputs or ops.inputs(result.spec)
        message = answer.comparison.message(answer.label, result.spec)
        row["repro"] = repro.write(run_dir, result.spec, answer.label, message, *inputs, row=row,
                                   passing_levels=repro_hardware.passing_levels(rows, answer.label))


class WarningLog:
    """The framework warnings of a run: one entry per (adapter, category, message), merged across resumes."""

    def __init__(self, run_dir: Path, verbose: bool = False) -> None:
        self.path = Path(run_dir) / WARNINGS_FILE
        self.verbose = verbose
        self.entries: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.changed = False
        if self.path.exists():
            try:
                for entry in json.loads(self.path.read_text()):
                    self.entries[(entry["adapter"], entry["category"], entry["message"])] = entry
            except (ValueError, KeyError, TypeError):  # a damaged file: start a new count rather than fail the run
                self.entries = {}

    def add(self, result: CaseResult) -> None:
        """Count the warnings of a case's answers; `verbose` prints each new one as it first appears."""
        for answer in result.answers:
            for category, message, count in answer.warnings:
                key = (answer.label, category, message)
                entry = self.entries.get(key)
                self.changed = True
                if entry is not None:
                    entry["count"] += count
                    continue
                self.entries[key] = {"adapter": answer.label, "category": category, "message": message,
                                     "count": count, "first_case": result.spec.id}
                if self.verbose:
                    print(f"refconv run: {answer.label} warned on {result.spec.id}: {category}: {message}",
                          file=sys.stderr)

    def write(self) -> Path | None:
        """warnings.json (most frequent first), when there is anything to say."""
        if not self.entries:
            return None
        if self.changed or not self.path.exists():
            ordered = sorted(self.entries.values(), key=lambda e: (-int(e["count"]), e["adapter"], e["message"]))
            write_json(self.path, ordered)
            self.changed = False
        return self.path
