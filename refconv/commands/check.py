"""Run your own arrays through the float64 reference and every engine: bug or rounding?

  refconv check --x x.npy --w w.npy --b b.npy --strides 2 --padding SAME
  refconv check --x x_nchw.npy --w w_oihw.npy --layout NCHW --w-layout OIHW --adapters tf,torch --out reports/mine

The arrays are NHWC/HWIO unless --layout NCHW / --w-layout OIHW say otherwise; their dtype is the case's.
Each engine runs on exactly these values in its own worker process. Per engine: outcome, max abs and rel
error, bound ratio and a one-line verdict ("within rounding" / "beyond rounding: finding", with the known
deviation that explains it, or NEW). Exit 0 when every engine is within rounding, 1 when one is beyond,
2 on bad input. --out writes the usual run directory (results, report.html, repro scripts).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = "check your own x/w/b arrays (.npy) against the reference on every engine: bug or rounding?"


def _pair_arg(text: str) -> int | tuple[int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return (parts[0], parts[1])
    raise argparse.ArgumentTypeError(f"must be N or H,W, got {text!r}")


def padding_arg(text: str) -> Any:
    """SAME, VALID or T,B,L,R."""
    if text.upper() in ("SAME", "VALID"):
        return text.upper()
    try:
        t, b, left, r = (int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be SAME, VALID or T,B,L,R, got {text!r}") from None
    return ((t, b), (left, r))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--x", required=True, metavar="X.npy", help="the input (NHWC, or NCHW with --layout NCHW)")
    p.add_argument("--w", required=True, metavar="W.npy", help="the kernel (HWIO, or OIHW with --w-layout OIHW)")
    p.add_argument("--b", default=None, metavar="B.npy", help="the bias, shape (c_out,)")
    p.add_argument("--strides", type=_pair_arg, default=1, metavar="S|SH,SW", help="default 1")
    p.add_argument("--padding", type=padding_arg, default="SAME", metavar="SAME|VALID|T,B,L,R",
                   help="TensorFlow's SAME (odd pixel after), VALID, or explicit pads (default SAME)")
    p.add_argument("--dilations", type=_pair_arg, default=1, metavar="D|DH,DW", help="default 1")
    p.add_argument("--groups", type=int, default=1, help="default 1 (c_in for a depthwise conv)")
    p.add_argument("--layout", choices=("NHWC", "NCHW"), default="NHWC",
                   help="layout of x, and the layout the engines are given (default NHWC)")
    p.add_argument("--w-layout", choices=("HWIO", "OIHW"), default="HWIO",
                   help="layout of w: HWIO (TensorFlow, Keras) or OIHW (PyTorch, ONNX)")
    p.add_argument("--adapters", default=None, metavar="A,B", help="engines (default: every available built-in)")
    p.add_argument("--out", default=None, metavar="DIR", help="also write a run directory (report, repro scripts)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per engine (default 120)")
    p.add_argument("--no-isolation", action="store_true", help="run the engines in this process (debugging)")


def main(args: argparse.Namespace) -> int:
    # refconv.check is the function (exported by refconv/__init__); the module's names are imported directly
    from refconv.check import OK_OUTCOMES, case_of, exit_code, load_array, run_check

    x = load_array(args.x, "x")
    w = load_array(args.w, "w")
    b = load_array(args.b, "b") if args.b else None
    spec, values = case_of(x, w, b, args.strides, args.padding, args.dilations, args.groups, args.layout,
                           args.w_layout)
    print(f"case {spec.id}: {spec.describe()}")
    rows, paths = run_check(spec, values, args.adapters, args.out, not args.no_isolation, args.timeout,
                                  argv=list(sys.argv))
    for label, reason in _skipped(rows, args.adapters).items():
        print(f"skipping adapter {label}: {reason}", file=sys.stderr)
    print(table(rows, args.out))
    if paths:
        print("wrote:")
        for path in paths:
            print(f"  {path}")
    code = exit_code(rows)
    beyond = sum(row["outcome"] not in OK_OUTCOMES for row in rows)
    print(f"{beyond} of {len(rows)} engine(s) beyond rounding" if code else
          f"every engine that ran is within rounding ({len(rows)} engine(s))")
    return code


def _skipped(rows: list[dict[str, Any]], adapters: str | None) -> dict[str, str]:
    """Default engines not installed here (named ones that are missing already failed with exit 2)."""
    if adapters is not None:
        return {}
    from refconv.commands.run import resolve_adapters

    ran = {row["adapter"] for row in rows}
    return {label: reason for label, reason in resolve_adapters(None)[1].items() if label not in ran}


def table(rows: list[dict[str, Any]], run_dir: str | None = None) -> str:
    """One line per engine: outcome, max abs and rel error, bound ratio, verdict."""
    width = max([len(str(row["adapter"])) for row in rows] + [6])
    lines = [f"{'engine':<{width}}  {'outcome':<11} {'max abs':>9} {'max rel':>9} {'ratio':>9}  verdict"]
    for row in rows:
        lines.append(f"{row['adapter']:<{width}}  {row['outcome']:<11} {_num(row['max_abs_err'])} "
                     f"{_num(row['max_rel_err'])} {_num(row['bound_ratio'])}  {row['verdict']}")
        if row.get("repro"):
            where = f"{run_dir.rstrip('/')}/{row['repro']}" if run_dir else row["repro"]
            lines.append(f"{'':<{width}}  repro: {where}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    value = float(value)
    return f"{'-':>9}" if value != value else f"{value:>9.2e}"
