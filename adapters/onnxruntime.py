"""`onnxruntime`: an in-memory ONNX model (one Conv node, plus Relu) run by an InferenceSession on the CPU.

The model is built with onnx.helper from the spec: NCHW input X, OIHW weight W and bias B are graph
inputs, so one session per spec shape serves every seed (sessions are cached). Padding comes from
refconv.padding.for_onnx (auto_pad SAME_UPPER / VALID, or pads). `build_model` is shared with `onnx-ref`.
What the CPU provider lacks (a dtype's Conv kernel; auto_pad SAME with dilation) is found by running a
tiny model once per feature and declined with ONNX Runtime's own message.
Variants: `onnxruntime:threads=N` (intra-op threads), `onnxruntime:opt=disable|basic|extended|all`.

Kernels (`isa(spec)`): "mlas:<level>", the float kernels MLAS (ONNX Runtime's math library, under its Conv)
picks by CPUID at load: avx512f, avx2 (AVX2 with FMA3), avx, else sse; "mlas:neon" on ARM. Derived from the
CPU's flags by MLAS's rule (platform.cpp); ONNX Runtime does not report it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw
from adapters.onnx_grad import OnnxTransposeMixin
from refconv import hardware, padding
from refconv.inputs import np_dtype
from refconv.spec import ConvSpec, SpecError

OPSET = 22  # Conv-22 admits bfloat16 in the schema; kernels are the runtime's business
OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}
MAX_SESSIONS = 64
_PROBE = ConvSpec(n=1, h=3, w=3, c_in=1, c_out=1, kh=1, kw=1)


def _features(spec: ConvSpec) -> list[tuple[str, ConvSpec]]:
    """(feature, tiny spec needing only it) for each feature of `spec` the CPU provider may lack."""
    out = [(spec.dtype, _PROBE.replace(dtype=spec.dtype))]
    if spec.padding == "SAME" and spec.dilations != (1, 1):
        out.append(("SAME with dilation", _PROBE.replace(kh=2, kw=2, dilations=(2, 2))))
    return out


def _tensor_type(dtype: str) -> int:
    from onnx import TensorProto

    return {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16, "float32": TensorProto.FLOAT,
            "float64": TensorProto.DOUBLE}[dtype]


def build_model(spec: ConvSpec) -> Any:
    """The ONNX ModelProto computing the spec's conv (Conv [+ Relu]) on NCHW X, OIHW W and B."""
    from onnx import helper

    elem = _tensor_type(spec.dtype)
    x_shape = [spec.n, spec.c_in, spec.h, spec.w]
    w_shape = [spec.c_out, spec.c_in // spec.groups, spec.kh, spec.kw]
    inputs = [helper.make_tensor_value_info("X", elem, x_shape), helper.make_tensor_value_info("W", elem, w_shape)]
    if spec.bias:
        inputs.append(helper.make_tensor_value_info("B", elem, [spec.c_out]))
    conv_out = "Y" if spec.activation is None else "conv"
    nodes = [helper.make_node(
        "Conv", [i.name for i in inputs], [conv_out], kernel_shape=[spec.kh, spec.kw], strides=list(spec.strides),
        dilations=list(spec.dilations), group=spec.groups, **padding.for_onnx(spec),
    )]
    if spec.activation == "relu":
        nodes.append(helper.make_node("Relu", ["conv"], ["Y"]))
    output = helper.make_tensor_value_info("Y", elem, None)
    graph = helper.make_graph(nodes, "refconv_conv2d", inputs, [output])
    opsets = [helper.make_opsetid("", OPSET)]
    # The oldest IR version that holds the opset, not the onnx library's newest: an older runtime
    # (onnxruntime@1.31.1 beside onnx 1.23) refuses a newer IR than it knows although the graph is the same.
    return helper.make_model(graph, opset_imports=opsets, producer_name="refconv",
                             ir_version=helper.find_min_ir_version_for(opsets))


def feeds(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> dict[str, np.ndarray]:
    """The model's inputs from NHWC x, HWIO w and b."""
    out = {"X": nhwc_to_nchw(x), "W": hwio_to_oihw(w)}
    if b is not None:
        out["B"] = np.ascontiguousarray(b)
    return out


def mlas_level(flags: frozenset[str] | set[str] | None = None) -> str:
    """MLAS's float kernel level for a CPU with these flags (this one's by default); '' when unknown."""
    flags = hardware.cpu_flags() if flags is None else flags
    if "avx512f" in flags:
        return "avx512f"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    if "avx" in flags:
        return "avx"
    if "sse2" in flags:
        return "sse"
    return "neon" if "asimd" in flags else ""


def _shape_key(spec: ConvSpec) -> ConvSpec:
    return spec.replace(seed=0, layout="NHWC", name="")


class OrtAdapter(OnnxTransposeMixin, PreparedAdapter):
    name = "onnxruntime"

    def __init__(self, threads: str | None = None, opt: str | None = None) -> None:
        import onnxruntime as ort

        self.ort = ort
        self.options = ort.SessionOptions()
        variant = {}
        if threads is not None:
            if not threads.isdigit() or int(threads) < 1:
                raise SpecError(f"onnxruntime option threads must be a positive integer, got {threads!r}")
            self.options.intra_op_num_threads = int(threads)
            variant["threads"] = threads
        if opt is not None:
            if opt not in OPT_LEVELS:
                raise SpecError(f"onnxruntime option opt must be one of {', '.join(OPT_LEVELS)}, got {opt!r}")
            self.options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt])
            variant["opt"] = opt
        self.name += "".join(f":{k}={v}" for k, v in sorted(variant.items()))
        self.sessions: OrderedDict[ConvSpec, Any] = OrderedDict()
        self.options.log_severity_level = 4  # errors reach the caller as exceptions; keep stderr quiet
        self.feature_reasons: dict[str, str | None] = {}

    def version(self) -> str:
        import onnx

        return f"{self.ort.__version__} (onnx {onnx.__version__}, opset {OPSET})"

    def settings(self) -> dict[str, Any]:
        return {
            "providers": "CPUExecutionProvider",
            "intra_op_threads": self.options.intra_op_num_threads or "(0: one per physical core)",
            "graph_optimization_level": str(self.options.graph_optimization_level),
            "mlas_level": mlas_level() or "(unknown)",
            "mlas_level_source": "derived: MLAS's CPUID dispatch rule on this CPU's flags",
        }

    def isa(self, spec: ConvSpec | None) -> str:
        """MLAS's kernel level (module docstring); the same for every case."""
        level = mlas_level()
        return f"mlas:{level}" if level else "mlas"

    def supports(self, spec: ConvSpec) -> str | None:
        if spec.layout == "channels_last":
            return "channels_last is a PyTorch memory format; ONNX Conv takes NCHW tensors"
        if spec.op == "transpose":  # ConvTranspose's own kernels: adapters/onnx_grad.py
            return self.transpose_reason(spec)
        for feature, probe in _features(spec):
            if feature not in self.feature_reasons:
                self.feature_reasons[feature] = self._probe(feature, probe)
            if self.feature_reasons[feature]:
                return self.feature_reasons[feature]
        return None

    def _probe(self, feature: str, spec: ConvSpec) -> str | None:
        """Run a tiny Conv needing `feature`; the provider's refusal (not a wrong value) is a capability."""
        errors = self.ort.capi.onnxruntime_pybind11_state
        try:
            x = np.zeros(spec.input_shape, dtype=np_dtype(spec.dtype))
            w = np.zeros(spec.kernel_shape, dtype=np_dtype(spec.dtype))
            self.session(spec).run(["Y"], feeds(x, w, np.zeros(spec.c_out, dtype=np_dtype(spec.dtype))))
        except (errors.NotImplemented, errors.InvalidGraph, errors.InvalidArgument) as exc:
            return f"ONNX Runtime's CPU provider refuses {feature} in Conv: {str(exc).splitlines()[0]}"
        return None

    def session(self, spec: ConvSpec) -> Any:
        """The cached InferenceSession for a spec's shapes and attributes."""
        key = _shape_key(spec)
        if key in self.sessions:
            self.sessions.move_to_end(key)
            return self.sessions[key]
        model = build_model(spec).SerializeToString()
        session = self.ort.InferenceSession(model, self.options, providers=["CPUExecutionProvider"])
        self.sessions[key] = session
        if len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return session

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        session = self.session(spec)
        inputs = feeds(x, w, b)
        return Prepared(lambda: session.run(["Y"], inputs)[0], nchw_to_nhwc)
