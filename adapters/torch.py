"""`torch`: torch.nn.functional.conv2d on the CPU (F.pad first where the padding is asymmetric).

NHWC and NCHW cases are both called with a contiguous NCHW tensor (PyTorch's only logical layout);
`channels_last` cases use torch.channels_last memory format for input and weight.
Variants: `torch:threads=N`; `torch:layout=channels_last` forces the channels_last memory format for
every case; `torch:mkldnn=off` turns oneDNN (mkldnn) off, the toggle that witnesses a CPU oneDNN bug
(refconv/data/known_deviations.toml); `torch:isa=<level>` caps the kernels at a oneDNN level
(refconv.hardware.ONEDNN_LEVELS): it sets ONEDNN_MAX_CPU_ISA (oneDNN's upper-case name) and ATEN_CPU_CAPABILITY
(hardware.ATEN_FOR_LEVEL, 'avx512' for the AVX-512 levels) before torch's import, so oneDNN's JIT kernels and
ATen's own vectorised kernels both follow the cap. Both are read once per process: each label runs in its own
worker, and a level this CPU cannot run (capping works only downward), or a torch already imported at another
level, is refused. `torch-cuda` runs the same calls on a CUDA device, with `torch-cuda:tf32=off|on`.

Kernels (`isa(spec)`, refconv/hardware.py): the backend torch itself picks for the case,
torch._C._select_conv_backend on empty tensors of the case's shapes, dtype and memory format (for the
gradients, the forward's backend, whose backward runs them):
- Mkldnn -> "onednn:<level>", the level oneDNN itself printed (the `isa:` line of its verbose header, read once
  per process from one tiny conv at construction; oneDNN's documented rule only where it printed none);
- Slow2d, SlowDilated2d, SlowTranspose2d (ATen's im2col + GEMM kernels) -> "aten:<capability>", ATen's
  dispatch level (torch.backends.cpu.get_cpu_capability(), lower case: avx512, avx2, default);
- Empty, MkldnnEmpty (no kernel runs) -> "empty"; NnpackSpatial -> "nnpack"; Xnnpack2d -> "xnnpack";
  any other -> "aten-<backend, lower case>:<capability>";
- shapes torch refuses before choosing a backend (its checks raise) -> "aten".
Checked on torch 2.13 (edge corpus and 60 random cases, each op): "onednn" exactly where oneDNN's verbose output
showed the op's primitive (forward, backward_data, backward_weights; a forward deconvolution for transpose), for
torch, torch-nn, threads=1, layout=channels_last and isa=avx2/avx512_core/sse41. The CUDA adapter says
"cuda:sm_<major><minor>".
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter, hwio_to_oihw
from adapters.capabilities import no_cuda_reason
from adapters.torch_grad import TorchGradMixin
from refconv import hardware, padding
from refconv.grad_padding import torch_transpose
from refconv.spec import ConvSpec, SpecError

LAYOUTS = ("channels_last",)
TF32 = {"on": True, "off": False}
MKLDNN = {"on": True, "off": False}
ISA_LINE = ",info,cpu,isa:"  # oneDNN's verbose header: onednn_verbose,v1,info,cpu,isa:Intel AVX2
OTHER_LIBRARIES = {"NnpackSpatial": "nnpack", "Xnnpack2d": "xnnpack"}  # backends that are not ATen's code


def _threads(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise SpecError(f"torch option threads must be a positive integer, got {value!r}")
    return int(value)


# torch's process-wide settings as first seen, so a default adapter sharing a process with a variant
# (in tests) still runs with the defaults: every adapter applies its own settings before each call.
_INITIAL: dict[str, Any] = {}
# oneDNN's level in this process as oneDNN reported it (level, text, source): probed once, the header prints once.
_ONEDNN: dict[str, str] = {}


def _label(name: str, variant: dict[str, str]) -> str:
    """The registry's label for a variant: name:key=value in key order."""
    return name + "".join(f":{k}={v}" for k, v in sorted(variant.items()))


def aten_capability(level: str) -> str:
    """ATEN_CPU_CAPABILITY for a oneDNN level: hardware.ATEN_FOR_LEVEL, 'avx512' for the AVX-512 levels."""
    return hardware.ATEN_FOR_LEVEL.get(level, "avx512")


def isa_reason(options: dict[str, str]) -> str | None:
    """Why `isa=<level>` cannot run here (unknown, or above this CPU), judged without importing torch."""
    return hardware.cap_reason(options)


def set_isa(adapter: str, isa: str) -> str:
    """Set ONEDNN_MAX_CPU_ISA and ATEN_CPU_CAPABILITY for `adapter:isa=<level>` before torch's import."""
    reason = isa_reason({"isa": isa})
    if reason:
        raise SpecError(f"{adapter}:{reason}" if reason.startswith("isa=") else f"{adapter} option isa: {reason}")
    level, aten = hardware.check_cap(isa), aten_capability(hardware.check_cap(isa))
    if "torch" in sys.modules:
        # both are read once (oneDNN at its first kernel, ATen at its first dispatch): a cap set now may not hold
        now = (hardware.onednn_level_in_force(), sys.modules["torch"].backends.cpu.get_cpu_capability().lower())
        if now != (level, aten):
            raise SpecError(f"{adapter}:isa={isa} cannot take effect: torch is already imported in this process "
                            f"with oneDNN at {now[0] or 'no level'} and ATen at {now[1]}; run the variant in its "
                            f"own worker process (not --no-isolation)")
    os.environ["ONEDNN_MAX_CPU_ISA"] = level.upper()
    os.environ["ATEN_CPU_CAPABILITY"] = aten
    return level


def _verbose_from_environment() -> bool:
    """Is oneDNN's verbose output on from the environment? (Its header is then printed to the log, not to us.)"""
    value = os.environ.get("ONEDNN_VERBOSE", os.environ.get("DNNL_VERBOSE", ""))
    return value.strip().lower() not in ("", "0", "none")


def _verbose_isa_text(torch: Any) -> str:
    """The `isa:` text of oneDNN's verbose header, from one tiny conv with fd 1 sent to a temporary file."""
    x, w = torch.zeros(2, 3, 5, 5), torch.zeros(4, 3, 3, 3)  # n=2: a 1-image float32 conv this small runs Slow2d
    enabled, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, True
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as out:
        os.dup2(out.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), torch.no_grad():
                torch.nn.functional.conv2d(x, w)
        finally:
            ctypes.CDLL(None).fflush(None)  # oneDNN prints with C stdio: empty its buffer into the file
            os.dup2(saved, 1)
            os.close(saved)
            torch.backends.mkldnn.enabled = enabled
        out.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
    return next((line.partition(ISA_LINE)[2].strip() for line in lines if ISA_LINE in line), "")


def onednn_level(torch: Any) -> dict[str, str]:
    """oneDNN's level in this process as oneDNN reports it: {level, text (verbatim), source}; probed once."""
    if not _ONEDNN:
        try:
            text = "" if _verbose_from_environment() else _verbose_isa_text(torch)
        except (AssertionError, RuntimeError):  # a build whose oneDNN verbose cannot be switched on
            text = ""
        if text:
            _ONEDNN.update(level=hardware.onednn_level_text(text), text=text,
                           source="oneDNN's verbose header (isa: line)")
        else:
            _ONEDNN.update(level=hardware.onednn_level_in_force(), text="",
                           source="derived: oneDNN printed no isa: line (ONEDNN_VERBOSE set, or its header was "
                                  "printed before); the CPU's highest level capped by ONEDNN_MAX_CPU_ISA")
    return _ONEDNN


def backend_name(backend: Any) -> str:
    """A _ConvBackend's name; torch 2.13's binding leaves MkldnnTranspose unnamed ('???')."""
    name = str(backend.name)
    if name != "???":
        return name.rstrip(",")  # the binding spells one 'MpsTranspose,'
    members = type(backend).__members__
    # ATen's enum (ConvUtils.h) runs Mkldnn, MkldnnTranspose, MkldnnEmpty: measured, transposed float32 convs
    # with n=2 get value 9 and run oneDNN (a deconvolution line in oneDNN's verbose output)
    if int(members["Mkldnn"]) < int(backend) < int(members["MkldnnEmpty"]):
        return "MkldnnTranspose"
    return f"backend{int(backend)}"


def conv_geometry(spec: ConvSpec) -> dict[str, Any]:
    """The tensors' shapes and the arguments torch's convolution receives for the case (after F.pad)."""
    cin_g = spec.c_in // spec.groups
    if spec.op == "transpose":
        t, (ho, wo) = torch_transpose(spec), padding.output_hw(spec)
        return {"input": (spec.n, spec.c_out, ho, wo), "weight": (spec.c_out, cin_g, spec.kh, spec.kw),
                "padding": list(t.padding), "transposed": True, "output_padding": list(t.output_padding)}
    pre, pad = padding.for_torch(spec)
    (top, bottom), (left, right) = padding.explicit_pads(spec)
    h, w, sym = spec.h, spec.w, [0, 0]
    if pre:  # F.pad, then VALID
        h, w = h + top + bottom, w + left + right
    elif pad == "same":  # torch pads the odd pixel itself, then convolves with the symmetric part
        h, w, sym = h + abs(top - bottom), w + abs(left - right), [min(top, bottom), min(left, right)]
    elif not isinstance(pad, str):
        sym = list(pad)
    return {"input": (spec.n, spec.c_in, h, w), "weight": (spec.c_out, cin_g, spec.kh, spec.kw), "padding": sym,
            "transposed": False, "output_padding": [0, 0]}


class TorchAdapter(TorchGradMixin, PreparedAdapter):
    name = "torch"
    device = "cpu"

    @staticmethod
    def unavailable_reason(options: dict[str, str]) -> str | None:
        """An isa level this CPU cannot run, named without importing torch."""
        return isa_reason(options)

    def __init__(self, threads: str | None = None, layout: str | None = None, mkldnn: str | None = None,
                 isa: str | None = None) -> None:
        if isa is not None:
            set_isa(type(self).name, isa)
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
        if isa is not None:
            self.variant["isa"] = isa
        self.name = _label(type(self).name, self.variant)
        self.apply()
        self.onednn = {}
        if self.device == "cpu" and self.mkldnn and torch.backends.mkldnn.is_available():
            self.onednn = onednn_level(torch)

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
        if self.device == "cpu":
            out.update(self.kernel_settings())
        return out

    def kernel_settings(self) -> dict[str, Any]:
        """What `isa` rests on: the caps asked for, oneDNN's level with its verbatim text and source, ATen's."""
        return {
            "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "(unset)"),
            "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY", "(unset)"),
            "onednn_isa": self.onednn.get("level", "(mkldnn off)"),
            "onednn_isa_text": self.onednn.get("text", ""),
            "onednn_isa_source": self.onednn.get("source", ""),
            "aten_cpu_capability": self.torch.backends.cpu.get_cpu_capability().lower(),
        }

    def isa(self, spec: ConvSpec | None) -> str:
        """The kernels of the backend torch picks for the case (module docstring); None: oneDNN's if on."""
        if spec is None:
            return hardware.onednn_isa(self.onednn["level"]) if self.onednn else self.backend_kernels("Slow2d")
        try:
            backend = self.conv_backend(spec)
        except RuntimeError:  # torch's shape checks refuse the case before choosing
            return "aten"
        return self.backend_kernels(backend)

    def conv_backend(self, spec: ConvSpec) -> str:
        """The name of torch's _ConvBackend for the case, asked on empty tensors under this adapter's settings."""
        self.apply()
        torch = self.torch
        geometry, fmt = conv_geometry(spec), self.memory_format(spec)
        dtype = getattr(torch, spec.dtype)
        x = torch.empty(geometry["input"], dtype=dtype, device=self.device).contiguous(memory_format=fmt)
        w = torch.empty(geometry["weight"], dtype=dtype, device=self.device).contiguous(memory_format=fmt)
        b = torch.empty(spec.c_out, dtype=dtype, device=self.device) if spec.op == "conv2d" and spec.bias else None
        grad = spec.op in ("grad_input", "grad_filter")
        (x if spec.op == "grad_input" else w).requires_grad_(grad)  # a backward needs a backend that has one
        with torch.set_grad_enabled(grad):
            backend = torch._C._select_conv_backend(
                x, w, b, list(spec.strides), geometry["padding"], list(spec.dilations), geometry["transposed"],
                geometry["output_padding"], spec.groups)
        return backend_name(backend)

    def backend_kernels(self, backend: str) -> str:
        """The `isa` text of a torch conv backend (module docstring)."""
        capability = self.torch.backends.cpu.get_cpu_capability().lower()
        if backend in ("Empty", "MkldnnEmpty"):
            return "empty"
        if backend.startswith("Mkldnn"):
            return hardware.onednn_isa(self.onednn.get("level", ""))
        if backend.startswith("Slow"):
            return f"aten:{capability}"
        if backend in OTHER_LIBRARIES:
            return OTHER_LIBRARIES[backend]
        return f"aten-{backend.lower()}:{capability}"

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

    def isa(self, spec: ConvSpec | None) -> str:
        """The CUDA device's compute capability: cuda:sm_<major><minor>."""
        major, minor = self.torch.cuda.get_device_capability(0)
        return f"cuda:sm_{major}{minor}"
