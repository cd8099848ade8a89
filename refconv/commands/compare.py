"""Compare two runs: kernels changed, outcome changes, error growth, cases in one run only, timing regressions.

Rows are matched by (case_id, adapter label). A matched row whose `isa` (the kernels the engine ran) or
`cpu_features` (the CPU) differ between the runs is set apart, "kernels changed: onednn:avx512_core_amx ->
onednn:avx2" per adapter, said first and never counted as a regression or a fix (a run without the columns
is unknown there: no change). Exit status, so CI can gate a framework upgrade on it:

  0  nothing regressed (fixes and rows in one run only are listed);
  1  a regression on unchanged kernels: a pass that became anything else, bound_ratio grown beyond
     --error-factor, an adapter slower beyond --time-factor in aggregate (with --require-all, a row of
     BASE missing from NEW too);
  2  nothing compared: the runs share no row (or a bad path or argument);
  3  nothing regressed, but rows whose kernels changed differ in outcome: a hardware change, not a verdict.

Speed on changed kernels is listed apart and flagged, never gating. Runs of different case selections or
seeds, and partial overlaps, are noted:

  refconv compare reports/before reports/after --out /tmp/cmp
"""

from __future__ import annotations

import argparse

HELP = "compare two runs: exit 1 on a regression, 3 when outcomes differ only on changed kernels"


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
    from refconv.report.diff import hardware_lines, verdict, write_comparison

    if args.time_min_ms < 0:
        raise UsageError(f"--time-min-ms must be non-negative, got {args.time_min_ms:g}")
    try:
        diff, paths = write_comparison(args.base, args.new, args.out, error_factor=args.error_factor,
                                       time_factor=args.time_factor, time_min_ms=args.time_min_ms,
                                       require_all=args.require_all)
    except OSError as exc:
        raise UsageError(f"cannot write the comparison: {exc.strerror or exc}: {exc.filename or ''}") from None
    for line in hardware_lines(diff):  # said first: these rows are set apart from the verdict below
        print(line)
    print(verdict(diff))
    for note in diff.notes:
        print(f"note: {note}")
    for path in paths:
        print(f"wrote {path}")
    return diff.exit_status
