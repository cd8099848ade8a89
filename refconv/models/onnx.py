"""ONNX models: every Conv and ConvTranspose node of the main graph, shapes from ONNX shape inference.

Runs inside an ONNX adapter's worker (`refconv audit model.onnx`). The batch comes from the model's
input, or --batch; symbolic dimensions are fixed before inference (batch 1 unless told), --input-shape
(NCHW) replaces the first input's shape. Weights and biases are the initializers (or Constant nodes)
the node reads, OIHW turned into HWIO; a weight computed inside the graph leaves `weight` None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refconv import padding as _padding
from refconv.models import Layer, hwio_from_oihw, onnx_padding, pair, unknown

# TensorProto element types refconv checks
ELEMENT_DTYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def layers(adapter: Any, path: str, batch: int | None = None, input_shape: list[int] | None = None,
           random_weights: bool = False) -> list[Layer]:
    """The 2-D conv layers of the ONNX model at `path`, in graph order."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(path)
    constants = _constants(model.graph)
    _fix_inputs(model.graph, set(constants), batch, input_shape)
    inferred = shape_inference.infer_shapes(model)
    shapes = _shapes(inferred.graph)
    out = []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        name = node.name or f"{node.op_type}_{index}"
        out.append(_layer(node, name, shapes, {} if random_weights else constants))
    return out


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """Initializers and Constant nodes' values by name."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _fix_inputs(graph: Any, constants: set[str], batch: int | None, input_shape: list[int] | None) -> None:
    """Give the graph inputs concrete shapes: --input-shape on the first, the batch on every one."""
    inputs = [i for i in graph.input if i.name not in constants]
    for position, value in enumerate(inputs):
        dims = value.type.tensor_type.shape.dim
        if position == 0 and input_shape is not None:
            if len(dims) != len(input_shape):
                raise ValueError(f"--input-shape has {len(input_shape)} dimensions, "
                                 f"input {value.name!r} has {len(dims)}")
            for dim, size in zip(dims, input_shape, strict=True):
                dim.dim_value = size
        if dims and (batch is not None or not dims[0].HasField("dim_value")):
            dims[0].dim_value = batch or 1


def _shapes(graph: Any) -> dict[str, tuple[list[int | None], int]]:
    """name -> (dims, element type) of every value shape inference knows."""
    out = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        out[value.name] = (dims, tensor.elem_type)
    return out


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _layer(node: Any, name: str, shapes: dict[str, Any], constants: dict[str, np.ndarray]) -> Layer:
    attrs = _attributes(node)
    x_dims, elem = shapes.get(node.input[0], ([], 0))
    dtype = ELEMENT_DTYPES.get(elem, f"element type {elem}")
    weight = constants.get(node.input[1])
    w_dims = list(weight.shape) if weight is not None else shapes.get(node.input[1], ([], 0))[0]
    has_bias = len(node.input) > 2 and node.input[2] != ""
    bias = constants.get(node.input[2]) if has_bias else None
    base = Layer(name=name, op_type=node.op_type, kind="transpose" if node.op_type == "ConvTranspose" else "conv",
                 n=1, h=1, w=1, c_in=1, c_out=1, kh=1, kw=1, dtype=dtype, has_bias=has_bias)
    if len(x_dims) != 4 or len(w_dims) != 4:
        return unknown(base, f"not a 2-D convolution (input rank {len(x_dims)}, weight rank {len(w_dims)})")
    if None in x_dims or None in w_dims:
        return unknown(base, f"input shape {x_dims} not known after shape inference; pass --input-shape N,C,H,W")
    if elem not in ELEMENT_DTYPES:
        return unknown(base, f"{dtype} is not a floating-point type refconv checks")
    strides = pair(attrs.get("strides", [1, 1]), "strides")
    dilations = pair(attrs.get("dilations", [1, 1]), "dilations")
    kernel = pair(attrs.get("kernel_shape", w_dims[2:]), "kernel_shape")
    groups = int(attrs.get("group", 1))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    n, c, h, w = (int(d) for d in x_dims)
    if weight is not None:
        base.weight = hwio_from_oihw(weight)
    base.bias = None if bias is None else np.asarray(bias)
    base.n, base.kh, base.kw, base.strides, base.dilations, base.groups = n, *kernel, strides, dilations, groups
    if node.op_type == "Conv":
        base.h, base.w, base.c_in, base.c_out = h, w, c, int(w_dims[0])
        base.padding = onnx_padding(auto_pad, attrs.get("pads", []), (h, w), kernel, strides, dilations)
        return base
    return _transpose(base, node, attrs, auto_pad, shapes, (h, w), c, int(w_dims[1]) * groups)


def _transpose(layer: Layer, node: Any, attrs: dict[str, Any], auto_pad: str, shapes: dict[str, Any],
               size: tuple[int, int], c_in: int, c_out: int) -> Layer:
    """ConvTranspose as the forward conv it is the adjoint of: that conv's input is the node's output."""
    y_dims = shapes.get(node.output[0], ([], 0))[0]
    if len(y_dims) != 4 or None in y_dims:
        return unknown(layer, f"output shape {y_dims} not known after shape inference")
    out_h, out_w = int(y_dims[2]), int(y_dims[3])
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") or "output_shape" in attrs:
        totals = [(size[i] - 1) * layer.strides[i] + _padding.effective_kernel((layer.kh, layer.kw)[i],
                  layer.dilations[i]) - (out_h, out_w)[i] + list(attrs.get("output_padding", [0, 0]))[i]
                  for i in range(2)]
        upper = auto_pad != "SAME_LOWER"
        firsts = [t // 2 if upper else t - t // 2 for t in totals]
        pads = [firsts[0], firsts[1], totals[0] - firsts[0], totals[1] - firsts[1]]
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    layer.h, layer.w, layer.c_in, layer.c_out = out_h, out_w, c_out, c_in
    layer.out_h, layer.out_w = size
    if min(pads) < 0:
        return unknown(layer, f"negative pads {pads} are not a zero-padded convolution")
    layer.padding = ((pads[0], pads[2]), (pads[1], pads[3]))
    return layer
