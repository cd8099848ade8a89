"""`torch`: torch.nn.functional.conv2d on the CPU (F.pad first where the padding is asymmetric).

NHWC and NCHW cases are both called with a contiguous NCHW tensor (PyTorch's only logical layout);
`channels_last` cases use torch.channels_last memory format for input and weight.
Variants: `torch:threads=N`; `torch:layout=channels_last` forces the channels_last memory format for
every case; `torch:mkldnn=off` turns oneDNN (mkldnn) off, the toggle that witnesses a CPU oneDNN bug
(refconv/data/known_deviations.toml). `torch-cuda` runs the same calls on a CUDA device, with `torch-cuda:tf32=off|on`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter, hwio_to_oihw
from adapters.capabilities import no_cuda_reason
from adapters.torch_grad import TorchGradMixin
from refconv import padding
from refconv.spec import ConvSpec, SpecError

LAYOUTS = ("channels_last",)
TF32 = {"on": True, "off": False}
MKLDNN = {"on": True, "off": False}


def _threads(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise SpecError(f"torch option threads must be a positive integer, got {value!r}")
    return int(value)


# torch's process-wide settings as first seen, so a default adapter sharing a process with a variant
# (in tests) still runs with the defaults: every adapter applies its own settings before each call.
_INITIAL: dict[str, Any] = {}


def _label(name: str, variant: dict[str, str]) -> str:
    """The registry's label for a variant: name:key=value in key order."""
    return name + "".join(f":{k}={v}" for k, v in sorted(variant.items()))


class TorchAdapter(TorchGradMixin, PreparedAdapter):
    name = "torch"
    device = "cpu"

    def __init__(self, threads: str | None = None, layout: str | None = None, mkldnn: str | None = None) -> None:
        import torch

        self.torch = torch
        _INITIAL.setdefault("threads", torch.get_num_threads())
        _INITIAL.setdefault("allow_tf32", torch.backends.cudnn.allow_tf32)
        _INITIAL.setdefault("mkldnn", torch.backends.mkldnn.enabled)
        self.threads = _INITIAL["threads"] if threads is None else _threads(threads)
        self.allow_tf32 = _INITIAL["allow_tf32"]
        self.mkldnn = _INITIAL["mkldnn"]
        self.force_channels_last = False
        self.variant: dict[str, str] = {}
        if threads is not None:
            self.variant["threads"] = threads
        if layout is not None:
            if layout not in LAYOUTS:
                raise SpecError(f"torch option layout must be 'channels_last', got {layout!r}")
            self.force_channels_last = True
            self.variant["layout"] = layout
        if mkldnn is not None:
            if mkldnn not in MKLDNN:
                raise SpecError(f"torch option mkldnn must be 'on' or 'off', got {mkldnn!r}")
            self.mkldnn = MKLDNN[mkldnn]
            self.variant["mkldnn"] = mkldnn
        self.name = _label(type(self).name, self.variant)
        self.apply()

    def apply(self) -> None:
        """Put this adapter's process-wide settings (threads, TF32, mkldnn) in force."""
        torch = self.torch
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        torch.backends.cudnn.allow_tf32 = self.allow_tf32
        torch.backends.mkldnn.enabled = self.mkldnn

    def version(self) -> str:
        return str(self.torch.__version__)

    def settings(self) -> dict[str, Any]:
        self.apply()
        torch = self.torch
        out: dict[str, Any] = {
            "threads": torch.get_num_threads(),
            "mkldnn_enabled": torch.backends.mkldnn.enabled,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "memory_format": "channels_last" if self.force_channels_last else "per case",
        }
        # The fp32_precision API (torch >= 2.9) says whether oneDNN/cuDNN may use TF32 or bf16 inside fp32 convs.
        for backend in ("mkldnn", "cudnn"):
            conv = getattr(getattr(torch.backends, backend), "conv", None)
            if conv is not None and hasattr(conv, "fp32_precision"):
                out[f"{backend}_conv_fp32_precision"] = conv.fp32_precision
        return out

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

    def memory_format(self, spec: ConvSpec) -> Any:
        """torch.channels_last for channels_last cases (or every case under layout=channels_last)."""
        torch = self.torch
        if self.force_channels_last or spec.layout == "channels_last":
            return torch.channels_last
        return torch.contiguous_format

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        self.apply()
        torch = self.torch
        fn = torch.nn.functional
        fmt = self.memory_format(spec)
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


class TorchCudaAdapter(TorchAdapter):
    """F.conv2d on the first CUDA device; `tf32=off|on` sets cuDNN's TF32 use for float32 convs."""

    name = "torch-cuda"
    device = "cuda"

    @staticmethod
    def unavailable_reason(options: dict[str, str]) -> str | None:
        """No CUDA device, or a CPU-only torch build, judged without importing torch."""
        return no_cuda_reason("torch")

    def __init__(self, tf32: str | None = None, threads: str | None = None, layout: str | None = None) -> None:
        super().__init__(threads=threads, layout=layout)
        torch = self.torch
        if not torch.cuda.is_available():
            raise SpecError("torch-cuda: torch.cuda.is_available() is False")
        if tf32 is not None:
            if tf32 not in TF32:
                raise SpecError(f"torch-cuda option tf32 must be 'on' or 'off', got {tf32!r}")
            self.allow_tf32 = TF32[tf32]
            self.variant["tf32"] = tf32
            self.name = _label(type(self).name, self.variant)
            self.apply()

    def version(self) -> str:
        torch = self.torch
        return f"{torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out["device_name"] = self.torch.cuda.get_device_name(0)
        out["cudnn_benchmark"] = self.torch.backends.cudnn.benchmark
        return out

    def synchronize(self) -> None:
        self.torch.cuda.synchronize()
