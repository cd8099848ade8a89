"""PyTorch modules: every nn.Conv2d / nn.ConvTranspose2d one forward pass reaches, found with forward hooks.

Runs inside the `torch` adapter's worker (`refconv audit package.module:factory --input-shape N,C,H,W`).
The factory is imported (the working directory is on the path, as for `python -m`), called with no
arguments, put in eval mode and run once on seeded values of the given shape (NCHW) in the dtype of its
first parameter. A module that runs twice gives two layers (`name`, `name#2`). Weights OIHW become HWIO.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import numpy as np

from refconv.models import Layer, dtype_name, hwio_from_oihw, pair, torch_padding, unknown


def build(factory: str) -> Any:
    """Import `package.module:factory` and call it."""
    module_name, _, attr = factory.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    make = getattr(module, attr, None)
    if make is None:
        raise ValueError(f"module {module_name!r} has no {attr!r}")
    return make()


def layers(adapter: Any, factory: str, batch: int | None = None, input_shape: list[int] | None = None,
           random_weights: bool = False) -> list[Layer]:
    """The conv layers of the module built by `factory`, in the order the forward pass reached them."""
    torch = adapter.torch
    if input_shape is None or len(input_shape) != 4:
        raise ValueError("a PyTorch module needs --input-shape N,C,H,W")
    model = build(factory)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{factory} returned {type(model).__name__}, not a torch.nn.Module")
    model.eval()
    shape = [batch or input_shape[0], *input_shape[1:]]
    first = next(model.parameters(), None)
    dtype = first.dtype if first is not None else torch.float32
    seen: dict[str, int] = {}
    out: list[Layer] = []

    def hook(name: str) -> Any:
        def record(module: Any, args: Any, result: Any) -> None:
            seen[name] = seen.get(name, 0) + 1
            label = name if seen[name] == 1 else f"{name}#{seen[name]}"
            out.append(_layer(module, label, tuple(args[0].shape), tuple(result.shape), random_weights))
        return record

    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if isinstance(m, kinds)]
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            model(torch.randn(shape, generator=generator).to(dtype))
    finally:
        for handle in handles:
            handle.remove()
    return out


def _array(tensor: Any) -> np.ndarray:
    """A parameter as NumPy in its own dtype (bfloat16 through float32, which holds it exactly)."""
    from refconv.inputs import np_dtype

    t = tensor.detach().cpu()
    name = dtype_name(t.dtype)
    return t.float().numpy().astype(np_dtype(name)) if name == "bfloat16" else t.numpy()


def _layer(module: Any, name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
           random_weights: bool) -> Layer:
    transpose = type(module).__name__ == "ConvTranspose2d"
    op_type = f"nn.{type(module).__name__}"
    dtype = dtype_name(module.weight.dtype)
    has_bias = module.bias is not None
    base = Layer(name=name, op_type=op_type, kind="transpose" if transpose else "conv", n=1, h=1, w=1, c_in=1,
                 c_out=1, kh=1, kw=1, dtype=dtype, has_bias=has_bias)
    if len(in_shape) != 4:
        return unknown(base, f"unbatched input of shape {in_shape}")
    n, c, h, w = in_shape
    base.kh, base.kw = pair(module.kernel_size, "kernel_size")
    base.strides, base.dilations, base.groups = pair(module.stride), pair(module.dilation), int(module.groups)
    if not random_weights:
        base.weight = hwio_from_oihw(_array(module.weight))
        base.bias = _array(module.bias) if has_bias else None
    if module.padding_mode != "zeros":
        base.skip = f"padding_mode={module.padding_mode!r} pads with data, not zeros: not a zero-padded conv2d"
    if not transpose:
        base.n, base.h, base.w, base.c_in, base.c_out = n, h, w, c, int(module.out_channels)
        base.padding = torch_padding(module.padding)
        return base
    ph, pw = pair(module.padding, "padding")
    base.n, base.h, base.w, base.c_in, base.c_out = n, int(out_shape[2]), int(out_shape[3]), \
        int(module.out_channels), c
    base.out_h, base.out_w = h, w
    base.padding = ((ph, ph), (pw, pw))
    return base
