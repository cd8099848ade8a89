"""`refconv audit MODEL`: every conv layer of a model, with its geometry, dtype and weights, on every engine.

MODEL is an ONNX file, a Keras `.keras` file or a PyTorch module factory `package.module:factory`. The
model is read inside its framework's adapter worker (`refconv.models.<framework>:layers` through
`WorkerHandle.call`), which returns plain `Layer` records. Each layer becomes a case (`refconv.models.spec_of`:
its geometry and dtype, seeded inputs, the model's real weights unless --random-weights) and goes through the
same machinery as `refconv check`: the float64 reference here, each engine on exactly those values in its
worker. Rows carry `layer` and `model`; a layer refconv cannot express is listed with the reason.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refconv import ops
from refconv.check import CALL_TIMEOUT_S, Session, Values, evaluate_values, start, write_run
from refconv.compare import TOLERANCE_C, Comparison
from refconv.errors import RefconvError, UsageError
from refconv.inputs import np_dtype
from refconv.models import Layer, spec_of
from refconv.padding import output_shape
from refconv.spec import ConvSpec

LOAD_TIMEOUT_S = 600.0  # parsing a large model and tracing it once on a busy machine
# kind -> (loader in the worker, adapter labels that can host it, first available wins)
LOADERS = {
    "onnx": ("refconv.models.onnx:layers", ("onnx-ref", "onnxruntime")),
    "keras": ("refconv.models.keras:layers", ("keras",)),
    "torch": ("refconv.models.torch:layers", ("torch", "torch-nn")),
}


@dataclass
class AuditResult:
    """What an audit found: rows (one per layer and engine), the layers read, and the files written."""

    model: str
    layers: list[Layer]
    rows: list[dict[str, Any]]
    paths: list[Path] = field(default_factory=list)
    run_dir: Path | None = None
    unavailable: dict[str, str] = field(default_factory=dict)  # default engines not installed here, with why

    @property
    def exit_code(self) -> int:
        from refconv.check import exit_code

        return exit_code(self.rows)


def model_kind(model: str) -> str:
    """'onnx', 'keras' or 'torch' from how MODEL is written; a missing file is a UsageError."""
    lower = model.lower()
    if lower.endswith((".onnx", ".keras")):
        if not os.path.isfile(model):
            raise UsageError(f"model file {model!r} does not exist")
        return "onnx" if lower.endswith(".onnx") else "keras"
    module, sep, factory = model.partition(":")
    if sep and module and factory.isidentifier():
        return "torch"
    raise UsageError(f"MODEL must be a .onnx file, a .keras file or a PyTorch factory 'package.module:function', "
                     f"got {model!r}")


def _loader_label(kind: str, running: Sequence[str]) -> str:
    import adapters

    candidates = LOADERS[kind][1]
    for label in [*(c for c in candidates if c in running), *candidates]:
        if adapters.unavailable_reason(label) is None:
            return label
    raise UsageError(f"cannot read a {kind} model here: {adapters.unavailable_reason(candidates[0])}")


def read_layers(model: str, kind: str, session: Session, batch: int | None, input_shape: list[int] | None,
                random_weights: bool) -> list[Layer]:
    """The model's conv layers, read in its framework's worker (the engines' own when it runs one)."""
    from refconv.worker import WorkerCallError, WorkerCrashed, WorkerTimeout

    label = _loader_label(kind, session.labels)
    source = os.path.abspath(model) if kind != "torch" else model
    try:
        return list(session.handle(label).call(LOADERS[kind][0], source, batch, input_shape, random_weights,
                                               timeout=LOAD_TIMEOUT_S))
    except (WorkerCallError, WorkerCrashed, WorkerTimeout) as exc:
        raise UsageError(f"cannot read {model}: {str(exc).splitlines()[0]}") from None


def layer_values(layer: Layer, spec: ConvSpec) -> Values:
    """The case's seeded inputs with the layer's own weight (and bias, for a forward conv) where it has them."""
    values = list(ops.inputs(spec))
    if layer.weight is None:
        return tuple(values)  # type: ignore[return-value]
    if tuple(layer.weight.shape) != spec.kernel_shape:
        raise UsageError(f"layer {layer.name}: weight shape {layer.weight.shape}, expected HWIO {spec.kernel_shape}")
    values[1] = np.ascontiguousarray(layer.weight).astype(np_dtype(spec.dtype))
    if ops.op_of(spec) == "conv2d" and spec.bias and layer.bias is not None:
        values[2] = np.ascontiguousarray(layer.bias).astype(np_dtype(spec.dtype))
    return tuple(values)  # type: ignore[return-value]


def declined(spec: ConvSpec, labels: Sequence[str], reason: str) -> list[Any]:
    """One `unsupported` answer per engine for a layer refconv cannot run (the reason says why)."""
    from refconv.runner import Answer

    shape = spec.input_shape if ops.op_of(spec) != "conv2d" else output_shape(spec)
    return [Answer(label, Comparison("unsupported", tuple(shape), None, int(np.prod(shape)),
                                     tolerance_c=TOLERANCE_C[spec.dtype], error=reason)) for label in labels]


def audit(model: str, adapters: str | Sequence[str] | None = None, batch: int | None = None,
          input_shape: Sequence[int] | None = None, random_weights: bool = False, seed: int = 0,
          out: str | os.PathLike[str] | None = None, isolation: bool = True, timeout: float = CALL_TIMEOUT_S,
          argv: list[str] | None = None, progress: bool = False) -> AuditResult:
    """Every conv layer of `model` through the reference and every engine; rows carry `layer` and `model`."""
    from refconv.store import RunStore

    kind = model_kind(model)
    store = RunStore.create(Path(out)) if out is not None else None
    session = start(adapters, isolation, argv)
    run_dir = None if store is None else store.dir
    rows: list[dict[str, Any]] = []
    try:
        layers = read_layers(model, kind, session, batch, None if input_shape is None else list(input_shape),
                             random_weights)
        bar = _progress(len(layers), progress)
        for index, layer in enumerate(layers):
            rows.extend(_layer_rows(layer, seed + index + 1, model, session, run_dir, timeout))
            bar.update(1)
        bar.close()
    finally:
        session.close()
    result = AuditResult(model, layers, rows, run_dir=run_dir, unavailable=session.unavailable)
    if store is not None:
        arguments = {"command": "audit", "model": model, "kind": kind, "batch": batch,
                     "input_shape": None if input_shape is None else list(input_shape),
                     "random_weights": random_weights, "seed": seed, "adapters": session.labels,
                     "unavailable": session.unavailable, "argv": session.argv,
                     "layers": [layer_summary(layer) for layer in layers]}
        result.paths = write_run(store.dir, store, session, rows, arguments)
    return result


def layer_summary(layer: Layer) -> dict[str, Any]:
    """A layer in run.json: name, framework op, whether it became a case and why not."""
    return {"layer": layer.name, "op_type": layer.op_type, "kind": layer.kind, "skip": layer.skip,
            "shape_known": layer.shape_known, "real_weights": layer.weight is not None}


def _layer_rows(layer: Layer, seed: int, model: str, session: Session, run_dir: Path | None,
                timeout: float) -> list[dict[str, Any]]:
    if not layer.shape_known:
        return []
    try:
        spec = spec_of(layer, seed)
    except RefconvError as exc:
        layer.skip, layer.shape_known = f"not a case refconv can express: {exc}", False
        return []
    values = layer_values(layer, spec)
    if layer.skip:
        answers = declined(spec, session.labels, layer.skip)
    else:
        answers = evaluate_values(spec, values, session.labels, session.handle, timeout)
    return session.rows(spec, values, answers, run_dir, extra={"layer": layer.name, "model": model})


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar over layers on stderr when asked for and stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, unit="layer", file=sys.stderr, dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))
