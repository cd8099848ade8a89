"""Keras `.keras` files: Conv2D, DepthwiseConv2D, SeparableConv2D (as its two convs) and Conv2DTranspose.

Runs inside the `keras` adapter's worker (`refconv audit model.keras`). Shapes come from each layer's
built input and output (the batch from the model, or --batch, 1 when the model leaves it open); the
kernels are Keras' own HWIO (a depthwise kernel (kh, kw, c_in, m) is the grouped HWIO (kh, kw, 1, c_in*m)).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refconv import padding as _padding
from refconv.models import Layer, dtype_name, keras_padding, pair, unknown

CONV_CLASSES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")


def layers(adapter: Any, path: str, batch: int | None = None, input_shape: list[int] | None = None,
           random_weights: bool = False) -> list[Layer]:
    """The 2-D conv layers of the saved model, depth first in layer order."""
    if input_shape is not None:
        raise ValueError("--input-shape is for ONNX and PyTorch models; a .keras model carries its input shapes")
    model = adapter.keras.saving.load_model(path, compile=False)
    out: list[Layer] = []
    for layer in _walk(model):
        kind = type(layer).__name__
        if kind in CONV_CLASSES:
            out.extend(_records(layer, kind, batch, random_weights))
    return out


def _walk(layer: Any) -> list[Any]:
    """Every layer, nested models opened in place."""
    out = []
    for child in getattr(layer, "layers", []):
        out.append(child)
        out.extend(_walk(child))
    return out


def _shape(tensor_shape: Any, batch: int | None, channels_first: bool) -> tuple[int, int, int, int] | None:
    """(n, h, w, c) from a Keras shape, or None when a spatial size is open."""
    dims = list(tensor_shape)
    if len(dims) != 4:
        return None
    n = batch or dims[0] or 1
    if channels_first:
        dims = [dims[0], dims[2], dims[3], dims[1]]
    if None in dims[1:]:
        return None
    return (int(n), int(dims[1]), int(dims[2]), int(dims[3]))


def _records(layer: Any, kind: str, batch: int | None, random_weights: bool) -> list[Layer]:
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    dtype = dtype_name(layer.compute_dtype)
    try:
        shape = _shape(layer.input.shape, batch, channels_first)
    except (AttributeError, ValueError):  # a layer of a subclassed model has no symbolic input
        shape = None
    base = Layer(name=layer.name, op_type=kind, kind="transpose" if kind == "Conv2DTranspose" else "conv",
                 n=1, h=1, w=1, c_in=1, c_out=1, kh=1, kw=1, dtype=dtype, has_bias=bool(layer.use_bias))
    if shape is None:
        return [unknown(base, "input shape unknown (a subclassed model, or an open spatial size)")]
    n, h, w, c_in = shape
    kh, kw = pair(layer.kernel_size, "kernel_size")
    base.n, base.h, base.w, base.c_in, base.kh, base.kw = n, h, w, c_in, kh, kw
    base.strides, base.dilations = pair(layer.strides, "strides"), pair(layer.dilation_rate, "dilation_rate")
    base.padding = keras_padding(layer.padding)
    if kind == "SeparableConv2D":
        return _separable(layer, base, dtype, random_weights)
    weights = [np.asarray(v) for v in layer.get_weights()]
    bias = weights[1] if layer.use_bias and len(weights) > 1 else None
    kernel = weights[0]
    if kind == "DepthwiseConv2D":
        kernel = kernel.reshape(kh, kw, 1, c_in * kernel.shape[3])
        base.groups = c_in
    elif kind == "Conv2D":
        base.groups = int(getattr(layer, "groups", 1))
    else:
        return [_transpose(layer, base, kernel, bias, batch, channels_first, random_weights)]
    base.c_out = int(kernel.shape[3])
    if not random_weights:
        base.weight, base.bias = kernel, bias
    return [base]


def _separable(layer: Any, depthwise: Layer, dtype: str, random_weights: bool) -> list[Layer]:
    """A SeparableConv2D is a depthwise conv then a 1x1 conv (the bias belongs to the second)."""
    kernel, pointwise = (np.asarray(v) for v in layer.get_weights()[:2])
    bias = np.asarray(layer.get_weights()[2]) if layer.use_bias else None
    rows, cols = _padding._geometry(depthwise.padding, depthwise.h, depthwise.w, depthwise.kh, depthwise.kw,
                                    depthwise.strides, depthwise.dilations)
    c_mid = depthwise.c_in * kernel.shape[3]
    depthwise.name, depthwise.groups, depthwise.c_out, depthwise.has_bias = f"{layer.name}/depthwise", \
        depthwise.c_in, c_mid, False
    point = Layer(name=f"{layer.name}/pointwise", op_type="SeparableConv2D", kind="conv", n=depthwise.n,
                  h=rows.out, w=cols.out, c_in=c_mid, c_out=int(pointwise.shape[3]), kh=1, kw=1, dtype=dtype,
                  has_bias=bias is not None)
    if not random_weights:
        depthwise.weight = kernel.reshape(depthwise.kh, depthwise.kw, 1, c_mid)
        point.weight, point.bias = pointwise, bias
    return [depthwise, point]


def _transpose(layer: Any, base: Layer, kernel: np.ndarray, bias: np.ndarray | None, batch: int | None,
               channels_first: bool, random_weights: bool) -> Layer:
    """Conv2DTranspose as the forward conv it is the adjoint of; Keras' kernel (kh, kw, filters, c_in) is its HWIO."""
    out = _shape(layer.output.shape, batch, channels_first)
    if out is None:
        return unknown(base, "output shape unknown")
    if getattr(layer, "output_padding", None) is not None:
        return unknown(base, "output_padding is set: the forward conv's padding is not SAME or VALID")
    base.out_h, base.out_w = base.h, base.w
    base.c_out, base.h, base.w, base.c_in = base.c_in, out[1], out[2], out[3]
    if not random_weights:
        base.weight, base.bias = kernel, bias
    return base
