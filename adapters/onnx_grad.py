"""The transposed conv of the `onnxruntime` and `onnx-ref` adapters (a mixin): one ConvTranspose node.

ONNX has no gradient ops in inference graphs, so these adapters offer `transpose` only. The node gets the
forward HWIO filter as W in ONNX's ConvTranspose layout (C_in_of_this = forward c_out, forward c_in / group,
kh, kw), which is the forward OIHW; strides, dilations and group are the forward ones; the size choice
comes from refconv.grad_padding.onnx_transpose (auto_pad SAME_UPPER with output_shape for SAME, else pads and
output_padding).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import Prepared, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw
from refconv.grad_padding import onnx_transpose
from refconv.spec import ConvSpec


def build_transpose_model(spec: ConvSpec, opset: int) -> Any:
    """The ONNX ModelProto of the spec's transposed conv on NCHW Y and W."""
    from onnx import helper

    from adapters.onnxruntime import _tensor_type

    elem = _tensor_type(spec.dtype)
    rows_out, cols_out = _forward_hw(spec)
    inputs = [helper.make_tensor_value_info("Y", elem, [spec.n, spec.c_out, rows_out, cols_out]),
              helper.make_tensor_value_info("W", elem, [spec.c_out, spec.c_in // spec.groups, spec.kh, spec.kw])]
    node = helper.make_node("ConvTranspose", ["Y", "W"], ["X"], kernel_shape=[spec.kh, spec.kw],
                            strides=list(spec.strides), dilations=list(spec.dilations), group=spec.groups,
                            **onnx_transpose(spec))
    output = helper.make_tensor_value_info("X", elem, None)
    graph = helper.make_graph([node], "refconv_conv_transpose", inputs, [output])
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="refconv",
                             ir_version=helper.find_min_ir_version_for(opsets))


def _forward_hw(spec: ConvSpec) -> tuple[int, int]:
    from refconv.padding import output_hw

    return output_hw(spec)


_PROBE = ConvSpec(n=1, h=3, w=3, c_in=1, c_out=1, kh=1, kw=1, op="transpose")


class OnnxTransposeMixin:
    """transpose for OrtAdapter (an InferenceSession per shape) and OnnxRefAdapter (ReferenceEvaluator)."""

    def transpose_runner(self, spec: ConvSpec) -> Any:
        """feeds -> the engine's output for the spec's ConvTranspose model."""
        from adapters.onnxruntime import OPSET, _shape_key

        ort = getattr(self, "ort", None)
        if ort is None:  # onnx-ref
            evaluator: Any = self.evaluator(build_transpose_model(spec, OPSET))  # type: ignore[attr-defined]
            return lambda feeds: evaluator.run(["X"], feeds)[0]
        sessions = self.sessions  # type: ignore[attr-defined]
        key = _shape_key(spec)
        if key not in sessions:
            model = build_transpose_model(spec, OPSET).SerializeToString()
            sessions[key] = ort.InferenceSession(model, self.options, providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
        session = sessions[key]
        return lambda feeds: session.run(["X"], feeds)[0]

    def transpose_reason(self, spec: ConvSpec) -> str | None:
        """ONNX Runtime's refusal of the case's dtype in ConvTranspose (probed once per dtype), or None."""
        ort = getattr(self, "ort", None)
        if ort is None or spec.op != "transpose":
            return None
        cache = self.__dict__.setdefault("_transpose_reasons", {})
        if spec.dtype not in cache:
            from refconv.inputs import np_dtype

            probe = _PROBE.replace(dtype=spec.dtype)
            zeros = {"Y": np.zeros((1, 1, 3, 3), dtype=np_dtype(spec.dtype)),
                     "W": np.zeros((1, 1, 1, 1), dtype=np_dtype(spec.dtype))}
            errors = ort.capi.onnxruntime_pybind11_state
            try:
                self.transpose_runner(probe)(zeros)
                cache[spec.dtype] = None
            except (errors.NotImplemented, errors.InvalidGraph, errors.InvalidArgument) as exc:
                cache[spec.dtype] = (f"ONNX Runtime's CPU provider refuses {spec.dtype} in ConvTranspose: "
                                     f"{str(exc).splitlines()[0]}")
        return cache[spec.dtype]  # type: ignore[no-any-return]

    def prepare_transpose(self, y: np.ndarray, w: np.ndarray, spec: ConvSpec) -> Prepared:
        run = self.transpose_runner(spec)
        feeds = {"Y": nhwc_to_nchw(y), "W": hwio_to_oihw(w)}
        return Prepared(lambda: run(feeds), nchw_to_nhwc)

    def transpose(self, y: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
        p = self.prepare_transpose(y, w, spec)
        return p.fetch(p.call())
