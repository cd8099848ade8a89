"""`torch-nn`: the layer API, torch.nn.Conv2d (+ nn.ReLU), loaded from HWIO weights.

The layer is built for the spec the way users build it: padding 'same' (stride 1), 'valid' or a
symmetric pair, with padding_mode='zeros'; asymmetric padding goes through nn.ZeroPad2d first. The
HWIO kernel is converted to the layer's OIHW weight here, which is where porting bugs live.
Layouts and dtypes are handled as in the `torch` adapter (same constructor options: threads, layout, mkldnn,
isa), and so are its kernels (`isa`: the backend torch picks, adapters/torch.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import Prepared, hwio_to_oihw
from adapters.torch import TorchAdapter
from adapters.torch_grad import TorchNNGradMixin
from refconv import padding
from refconv.spec import ConvSpec


class TorchNNAdapter(TorchNNGradMixin, TorchAdapter):
    name = "torch-nn"

    def build(self, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Any:
        """nn.Sequential([ZeroPad2d], Conv2d, [ReLU]) in eval mode with the case's weights and dtype."""
        nn = self.torch.nn
        pre, pad = padding.for_torch(spec)
        conv = nn.Conv2d(
            spec.c_in, spec.c_out, (spec.kh, spec.kw), stride=spec.strides, padding=pad, dilation=spec.dilations,
            groups=spec.groups, bias=spec.bias, padding_mode="zeros", device=self.device,
            dtype=self.to_tensor(w[:0]).dtype,
        )
        with self.torch.no_grad():
            conv.weight.copy_(self.to_tensor(hwio_to_oihw(w)))
            if b is not None:
                conv.bias.copy_(self.to_tensor(b))
        layers = ([nn.ZeroPad2d(pre)] if pre else []) + [conv] + ([nn.ReLU()] if spec.activation == "relu" else [])
        model = nn.Sequential(*layers).eval()
        return model.to(memory_format=self.memory_format(spec))

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        self.apply()
        torch = self.torch
        model = self.build(w, b, spec)
        tx = self.to_tensor(x).permute(0, 3, 1, 2).contiguous(memory_format=self.memory_format(spec))

        def call() -> Any:
            with torch.no_grad():
                y = model(tx)
            self.synchronize()
            return y

        return Prepared(call, lambda y: self.to_numpy(y.permute(0, 2, 3, 1)))
