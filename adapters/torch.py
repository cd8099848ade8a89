"""`torch`: torch.nn.functional.conv2d on the CPU (F.pad first where the padding is asymmetric).

NHWC and NCHW cases are both called with a contiguous NCHW tensor (PyTorch's only logical layout);
`channels_last` cases use torch.channels_last memory format for input and weight.
Variants: `torch:threads=N`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter, hwio_to_oihw
from refconv import padding
from refconv.spec import ConvSpec, SpecError


class TorchAdapter(PreparedAdapter):
    name = "torch"
    device = "cpu"

    def __init__(self, threads: str | None = None) -> None:
        import torch

        self.torch = torch
        if threads is not None:
            if not threads.isdigit() or int(threads) < 1:
                raise SpecError(f"torch option threads must be a positive integer, got {threads!r}")
            torch.set_num_threads(int(threads))
            self.name = f"torch:threads={threads}"

    def version(self) -> str:
        return str(self.torch.__version__)

    def settings(self) -> dict[str, Any]:
        torch = self.torch
        return {
            "threads": torch.get_num_threads(),
            "mkldnn_enabled": torch.backends.mkldnn.enabled,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }

    def to_tensor(self, a: np.ndarray) -> Any:
        """NumPy to torch, bfloat16 (ml_dtypes) through its 16-bit pattern."""
        torch = self.torch
        if a.dtype.name == "bfloat16":
            return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16).to(self.device)
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def to_numpy(self, t: Any) -> np.ndarray:
        torch = self.torch
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:
            import ml_dtypes

            return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        torch = self.torch
        fn = torch.nn.functional
        fmt = torch.channels_last if spec.layout == "channels_last" else torch.contiguous_format
        tx = self.to_tensor(x).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
        tw = self.to_tensor(hwio_to_oihw(w)).contiguous(memory_format=fmt)
        tb = None if b is None else self.to_tensor(b)
        pre, pad = padding.for_torch(spec)

        def call() -> Any:
            with torch.no_grad():
                xin = fn.pad(tx, pre) if pre else tx
                y = fn.conv2d(xin, tw, tb, stride=spec.strides, padding=pad, dilation=spec.dilations,
                              groups=spec.groups)
                if spec.activation == "relu":
                    y = fn.relu(y)
            self.synchronize()
            return y

        return Prepared(call, lambda y: self.to_numpy(y.permute(0, 2, 3, 1)))

    def synchronize(self) -> None:
        """Wait for asynchronous devices; nothing to wait for on the CPU."""
