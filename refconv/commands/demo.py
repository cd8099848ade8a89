"""Run the tutorial's experiment on a photo: an edge detector and a box blur at stride 1 and 2.

The reference and every available framework (each in its own subprocess) compute the same layer;
the figure shows the input, both output channels per stride for each, and each framework's max
absolute difference from the reference. Default photo: matplotlib's bundled grace_hopper.jpg.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "the tutorial's edge/blur experiment on a photo, for the reference and every framework (writes a PNG)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", default=None, metavar="PATH",
                   help="an image file (default: matplotlib's grace_hopper.jpg)")
    p.add_argument("--out", default="refconv-demo.png", metavar="FILE.png", help="where to write the figure")
    p.add_argument("--relu", action="store_true", help="apply ReLU after the bias")
    p.add_argument("--adapters", default=None, metavar="A,B",
                   help="comma-separated adapters (default: every available one but numpy)")


def main(args: argparse.Namespace) -> int:
    from refconv import demo
    from refconv.errors import UsageError

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out must name a .png file, got {args.out!r}")
    if not out.parent.is_dir():
        raise UsageError(f"--out {args.out!r}: directory {str(out.parent)!r} does not exist")
    names = None if args.adapters is None else [a.strip() for a in args.adapters.split(",") if a.strip()]
    path, result = demo.run(args.image, out, args.relu, names)
    for line in demo.summary_lines(result):
        print(line)
    print(f"wrote {path.resolve()}")
    return 0
