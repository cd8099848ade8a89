"""Explain one case: output size and each side's padding with the arithmetic, and what each framework is told.

CASE is a case id (as printed by `refconv cases` or in a report) or the name of an edge-corpus case:

    refconv explain n1-6x6x3-k3x3x2-s2x2-same-f32
    refconv explain kernel_equals_stride_zero_padding
"""

from __future__ import annotations

import argparse

HELP = "show a case's output size, padding arithmetic and each framework's padding arguments"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", nargs="+", metavar="CASE", help="a case id or an edge case name (several allowed)")


def main(args: argparse.Namespace) -> int:
    from refconv.explain import explain, resolve

    specs = [resolve(text) for text in args.case]  # every id checked before anything is printed
    print("\n\n".join(explain(spec) for spec in specs))
    return 0
