"""Run every conv layer of a model, with its geometry, dtype and weights, on every engine.

  refconv audit model.onnx --out reports/audit-resnet
  refconv audit model.keras --adapters tf,torch,onnxruntime
  refconv audit mypkg.nets:resnet18 --input-shape 1,3,224,224 --random-weights

MODEL is an ONNX file (Conv and ConvTranspose nodes, shapes from shape inference), a Keras .keras file
(Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose) or a PyTorch factory package.module:function
(nn.Conv2d / nn.ConvTranspose2d reached by one forward pass on --input-shape). The model is read inside its
framework's worker; each layer becomes a case (its geometry and dtype, seeded inputs, the model's weights
unless --random-weights) and runs on every engine. Prints one line per layer: which engines deviate and why
(a known deviation, or NEW). Exit 0 when every engine is within rounding on every layer, 1 when one is
beyond, 2 on bad input. --out writes a run directory whose report opens with the per-layer table.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = "run every conv layer of a model (.onnx, .keras, package.module:factory) on every engine"


def _shape(text: str) -> list[int]:
    try:
        dims = [int(p) for p in text.split(",")]
    except ValueError:
        dims = []
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"must be positive integers like 1,3,32,32, got {text!r}")
    return dims


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model.onnx, model.keras or package.module:factory")
    p.add_argument("--input-shape", type=_shape, default=None, metavar="N,C,H,W",
                   help="the input shape, NCHW (needed for a PyTorch factory; overrides an ONNX model's input)")
    p.add_argument("--batch", type=_positive, default=None, help="batch size (default: the model's, else 1)")
    p.add_argument("--random-weights", action="store_true", help="seeded weights instead of the model's own")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    p.add_argument("--adapters", default=None, metavar="A,B", help="engines (default: every available built-in)")
    p.add_argument("--out", default=None, metavar="DIR", help="write a run directory (report, repro scripts)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per engine and layer")
    p.add_argument("--no-isolation", action="store_true", help="run the engines in this process (debugging)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from refconv.audit import audit, layer_summary
    from refconv.report.layers import records

    result = audit(args.model, args.adapters, args.batch, args.input_shape, args.random_weights, args.seed,
                   args.out, not args.no_isolation, args.timeout, argv=list(sys.argv), progress=not args.no_progress)
    for label, reason in result.unavailable.items():
        print(f"skipping adapter {label}: {reason}", file=sys.stderr)
    table = records(result.rows, [layer_summary(layer) for layer in result.layers])
    print(f"{args.model}: {len(result.layers)} conv layer(s)")
    for entry in table:
        print(_line(entry, args.out))
    if result.paths:
        print("wrote:")
        for path in result.paths:
            print(f"  {path}")
    deviating = [entry["layer"] for entry in table if entry["deviating"] not in ("", "none")]
    print(f"{len(deviating)} layer(s) with an engine beyond rounding: {', '.join(deviating)}" if deviating
          else "every engine is within rounding on every audited layer")
    return result.exit_code


def _line(entry: dict[str, Any], out: str | None) -> str:
    head = f"{entry['layer']}: {entry['geometry']}"
    if not entry["deviating"]:
        return f"{head}\n  not audited: {entry['declined']}"
    lines = [head, f"  deviating: {entry['deviating']}", f"  within rounding: {entry['within rounding']}"]
    if entry["declined"]:
        lines.append(f"  declined: {entry['declined']}")
    if entry["repro"]:
        prefix = out.rstrip("/") + "/" if out else ""
        lines.append("  repro: " + " ".join(prefix + path for path in entry["repro"].split()))
    return "\n".join(lines)
