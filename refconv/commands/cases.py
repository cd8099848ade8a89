"""List the cases a selection expands to, one id per line (with its name and description)."""

from __future__ import annotations

import argparse

HELP = "list the cases of a selection (edge, random:N, grid, case ids)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("selection", nargs="?", default=None, help="e.g. 'edge,random:200' (default: the run default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sweep (default 0)")
    p.add_argument("--describe", action="store_true", help="print each case in words too")


def main(args: argparse.Namespace) -> int:
    from refconv import cases

    specs = cases.select(args.selection or cases.DEFAULT_SELECTION, seed=args.seed)
    for spec in specs:
        line = spec.id
        if spec.name:
            line += f"  [{spec.name}]"
        if args.describe:
            line += f"  {spec.describe()}"
        print(line)
    return 0
