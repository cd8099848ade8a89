"""Reports of a run: DataFrame summaries for notebooks, summary.md and report.html, and run comparison.

>>> from refconv.report import load_run, outcomes, write_reports   # doctest: +SKIP
>>> df = load_run("reports/20261126-101500-ab12")                   # doctest: +SKIP
>>> outcomes(df)                                                    # doctest: +SKIP
"""

from refconv.report.diff import RunDiff, compare_runs, write_comparison
from refconv.report.load import load_run, normalize, read_json
from refconv.report.render import write_reports
from refconv.report.summary import (
    by,
    capability,
    deviations,
    findings,
    hosts,
    outcomes,
    outcomes_by_host,
    same_geometry,
    timings,
    timings_by_host,
    unsupported_reasons,
    worst,
)

__all__ = [
    "RunDiff", "by", "capability", "compare_runs", "deviations", "findings", "hosts", "load_run", "normalize",
    "outcomes", "outcomes_by_host", "read_json", "same_geometry", "timings", "timings_by_host", "unsupported_reasons",
    "worst", "write_comparison", "write_reports",
]
