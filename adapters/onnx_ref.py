"""`onnx-ref`: the `onnxruntime` adapter's model run by onnx.reference.ReferenceEvaluator.

A second, pure-Python (NumPy) implementation of ONNX Conv, independent of ONNX Runtime's kernels.
It is slow: cases above MAX_FLOPS are declined with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter, nchw_to_nhwc
from adapters.onnx_grad import OnnxTransposeMixin
from adapters.onnxruntime import OPSET, build_model, feeds
from refconv.rows import flops
from refconv.spec import ConvSpec

MAX_FLOPS = 50_000_000


class OnnxRefAdapter(OnnxTransposeMixin, PreparedAdapter):
    name = "onnx-ref"

    def __init__(self) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        self.onnx = onnx
        self.evaluator = ReferenceEvaluator

    def version(self) -> str:
        return f"onnx {self.onnx.__version__} ReferenceEvaluator (opset {OPSET})"

    def settings(self) -> dict[str, Any]:
        return {"implementation": "onnx.reference (NumPy)"}

    def isa(self, spec: ConvSpec | None) -> str:
        """onnx.reference computes Conv with NumPy: 'numpy'."""
        return "numpy"

    def supports(self, spec: ConvSpec) -> str | None:
        if spec.layout == "channels_last":
            return "channels_last is a PyTorch memory format; ONNX Conv takes NCHW tensors"
        if flops(spec) > MAX_FLOPS:
            return f"{flops(spec):.2e} FLOPs is above onnx-ref's cap of {MAX_FLOPS:.0e} (a slow pure-Python evaluator)"
        return None

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        evaluator: Any = self.evaluator(build_model(spec))
        inputs = feeds(x, w, b)
        return Prepared(lambda: evaluator.run(["Y"], inputs)[0], nchw_to_nhwc)
