"""Re-render summary.md and report.html of a run directory from its stored rows (nothing is re-run).

  refconv report reports/20261126-101500-ab12
"""

from __future__ import annotations

import argparse

HELP = "re-render summary.md and report.html of a run from its stored rows"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory holding results.parquet or results.csv")
    p.add_argument("--quiet", action="store_true", help="do not print the outcome table")


def main(args: argparse.Namespace) -> int:
    from refconv.errors import UsageError
    from refconv.report import load_run, outcomes, write_reports

    try:
        paths = write_reports(args.run_dir)
    except OSError as exc:  # an unwritable run directory: one line
        raise UsageError(f"cannot write the report into {args.run_dir!r}: {exc.strerror or exc}") from None
    if not args.quiet:
        print(outcomes(load_run(args.run_dir)).to_string())
    for path in paths:
        print(f"wrote {path}")
    return 0
