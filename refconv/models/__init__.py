"""The conv layers of a model as plain records, for `refconv audit`.

Each loader (`refconv.models.onnx`, `.keras`, `.torch`) runs inside its framework's adapter worker
(`WorkerHandle.call("refconv.models.onnx:layers", ...)`) and returns `Layer` records: names, geometry,
dtype and the real weights as NumPy arrays, never framework objects. This module is framework-free:
it maps each framework's padding convention onto refconv's (through `refconv.padding`) and turns a
`Layer` into a `ConvSpec`.

>>> onnx_padding("SAME_LOWER", [0, 0, 0, 0], size=(6, 6), kernel=(2, 2), strides=(2, 2), dilations=(1, 1))
((0, 0), (0, 0))
>>> onnx_padding("SAME_LOWER", [0, 0, 0, 0], size=(5, 5), kernel=(2, 2), strides=(1, 1), dilations=(1, 1))
((1, 0), (1, 0))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refconv import padding as _padding
from refconv.errors import SpecError
from refconv.spec import ConvSpec, Padding

KINDS = ("conv", "transpose")


@dataclass
class Layer:
    """One 2-D conv layer of a model, in refconv's terms (NHWC sizes, HWIO weight of the forward conv).

    For a `conv` layer (n, h, w, c_in) is its input and (c_out, kh, kw) its kernel. For a `transpose`
    layer the fields describe the forward conv whose adjoint the layer computes: (h, w, c_in) is the
    layer's OUTPUT, c_out its input channels, `out_h`/`out_w` its input size; `padding` is then the
    forward conv's explicit padding.
    """

    name: str
    op_type: str  # the framework's own name: Conv, ConvTranspose, Conv2D, DepthwiseConv2D, nn.Conv2d...
    kind: str  # conv | transpose
    n: int
    h: int
    w: int
    c_in: int
    c_out: int
    kh: int
    kw: int
    strides: tuple[int, int] = (1, 1)
    padding: Padding = "VALID"
    dilations: tuple[int, int] = (1, 1)
    groups: int = 1
    dtype: str = "float32"
    weight: np.ndarray | None = None  # HWIO of the forward conv, in `dtype`; None: the model has none to give
    bias: np.ndarray | None = None
    has_bias: bool = True
    out_h: int = 0  # transpose only: the layer's input size (the forward conv's output)
    out_w: int = 0
    skip: str = ""  # why refconv cannot hold this layer against the reference (reflect padding, ...)
    shape_known: bool = True  # False: the fields above are placeholders (an open input size, a 1-D conv)
    notes: list[str] = field(default_factory=list)


def unknown(layer: Layer, reason: str) -> Layer:
    """Mark a layer refconv cannot turn into a case (its geometry fields are placeholders)."""
    layer.skip, layer.shape_known = reason, False
    return layer


def pair(value: Any, name: str = "value") -> tuple[int, int]:
    """An int or a 2-sequence of ints as a pair."""
    if isinstance(value, int | np.integer):
        return (int(value), int(value))
    items = tuple(int(v) for v in value)
    if len(items) != 2:
        raise SpecError(f"{name} must describe two spatial axes, got {value!r}")
    return (items[0], items[1])


def onnx_padding(auto_pad: str, pads: Sequence[int], size: tuple[int, int], kernel: tuple[int, int],
                 strides: tuple[int, int], dilations: tuple[int, int]) -> Padding:
    """ONNX Conv's auto_pad/pads as refconv padding: SAME_UPPER is TF's SAME; SAME_LOWER puts the odd pixel first."""
    if auto_pad == "SAME_UPPER":
        return "SAME"
    if auto_pad == "VALID":
        return "VALID"
    if auto_pad == "SAME_LOWER":
        axes = [_padding.axis("SAME", size[i], kernel[i], strides[i], dilations[i]) for i in range(2)]
        return ((axes[0].after, axes[0].before), (axes[1].after, axes[1].before))
    if auto_pad not in ("", "NOTSET"):
        raise SpecError(f"unknown ONNX auto_pad {auto_pad!r}")
    top, left, bottom, right = (list(pads) or [0, 0, 0, 0])
    return ((int(top), int(bottom)), (int(left), int(right)))


def torch_padding(value: Any) -> Padding:
    """nn.Conv2d's `padding` ('same' at stride 1 is TF's SAME: total d(k-1), the odd pixel after)."""
    if isinstance(value, str):
        return "SAME" if value == "same" else "VALID"
    ph, pw = pair(value, "padding")
    return ((ph, ph), (pw, pw))


def keras_padding(value: str) -> Padding:
    """Keras Conv2D's `padding`: 'same' is TF's SAME, 'valid' is VALID."""
    if value not in ("same", "valid"):
        raise SpecError(f"Keras padding {value!r} is not a 2-D conv padding")
    return value.upper()


def spec_of(layer: Layer, seed: int, bias: bool | None = None) -> ConvSpec:
    """The case of a layer: its geometry and dtype, inputs drawn with `seed` (NHWC, as refconv runs them)."""
    fields: dict[str, Any] = {}
    if layer.kind == "transpose":
        fields["op"] = "transpose"
    return ConvSpec(
        n=layer.n, h=layer.h, w=layer.w, c_in=layer.c_in, c_out=layer.c_out, kh=layer.kh, kw=layer.kw,
        strides=layer.strides, padding=layer.padding, dilations=layer.dilations, groups=layer.groups,
        bias=layer.has_bias if bias is None else bias, dtype=layer.dtype, seed=seed, name=layer.name, **fields,
    )


def hwio_from_oihw(w: np.ndarray) -> np.ndarray:
    """PyTorch/ONNX OIHW (c_out, c_in/g, kh, kw) to TF's grouped HWIO (kh, kw, c_in/g, c_out)."""
    return np.ascontiguousarray(np.asarray(w).transpose(2, 3, 1, 0))


def dtype_name(dtype: Any) -> str:
    """A NumPy/framework dtype's name as a spec dtype ('float32', 'bfloat16'...)."""
    name = str(getattr(dtype, "name", dtype)).replace("torch.", "")
    return {"half": "float16", "float": "float32", "double": "float64"}.get(name, name)
