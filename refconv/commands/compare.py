"""Compare two runs: outcome changes, error growth, cases in one run only, timing regressions.

Rows are matched by (case_id, adapter label). Exit status 1 when anything regressed (a pass that became
anything else, bound_ratio grown beyond --error-factor, a median time beyond --time-factor and
--time-min-ms slower; with --require-all, a row of BASE missing from NEW), 0 otherwise, so CI can gate a
framework upgrade on it. Two runs that share no row are an error (exit 2): nothing was compared. Runs of
different case selections or seeds, and partial overlaps, are noted:

  refconv compare reports/before reports/after --out /tmp/cmp
"""

from __future__ import annotations

import argparse

HELP = "compare two runs and exit 1 when the new one regressed"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from refconv.thresholds import ERROR_FACTOR, TIME_FACTOR, TIME_MIN_MS

    p.add_argument("base", metavar="BASE", help="the run directory to compare against")
    p.add_argument("new", metavar="NEW", help="the run directory under test")
    p.add_argument("--out", metavar="DIR", default=None, help="where compare.md and compare.html go (default: NEW)")
    p.add_argument("--error-factor", type=_positive, default=ERROR_FACTOR, metavar="F",
                   help=f"error growth that regresses: new bound_ratio > F * max(base, 1) (default {ERROR_FACTOR:g})")
    p.add_argument("--time-factor", type=_positive, default=TIME_FACTOR, metavar="F",
                   help=f"median time ratio that regresses (default {TIME_FACTOR:g})")
    p.add_argument("--require-all", action="store_true",
                   help="a row of BASE missing from NEW (a case or adapter dropped) is a regression too")
    p.add_argument("--time-min-ms", type=float, default=TIME_MIN_MS, metavar="MS",
                   help=f"ignore slowdowns smaller than this many ms (default {TIME_MIN_MS:g})")


def main(args: argparse.Namespace) -> int:
    from refconv.errors import UsageError
    from refconv.report.diff import verdict, write_comparison

    if args.time_min_ms < 0:
        raise UsageError(f"--time-min-ms must be non-negative, got {args.time_min_ms:g}")
    try:
        diff, paths = write_comparison(args.base, args.new, args.out, error_factor=args.error_factor,
                                       time_factor=args.time_factor, time_min_ms=args.time_min_ms,
                                       require_all=args.require_all)
    except OSError as exc:
        raise UsageError(f"cannot write the comparison: {exc.strerror or exc}: {exc.filename or ''}") from None
    print(verdict(diff))
    for note in diff.notes:
        print(f"note: {note}")
    for path in paths:
        print(f"wrote {path}")
    return 1 if diff.regressed else 0
