"""`jax`: jax.lax.conv_general_dilated on the CPU, jitted with the bias add and ReLU.

float64 needs JAX's x64 mode, which is off by default: the constructor turns it on with
`jax.config.update("jax_enable_x64", True)` (process-wide, so JAX runs in its own worker).
NHWC cases use dimension_numbers ('NHWC', 'HWIO', 'NHWC'); NCHW cases are called with an NCHW input
and an OIHW kernel, ('NCHW', 'OIHW', 'NCHW'). Padding comes from refconv.padding.for_jax; groups map to
feature_group_count, dilations to rhs_dilation.
Variants: `jax:precision=highest|default` sets the `precision` argument of the convolution.
`jax-gpu` runs the same on the first GPU, with `jax-gpu:precision=highest`.

Kernels (`isa(spec)`, refconv/hardware.py): "xla:<level>", XLA:CPU's code for the CPU's widest vector ISA
(sse4_2, avx, avx2, avx512), capped by XLA_FLAGS=--xla_cpu_max_isa=<ISA> where set. Derived, not reported:
XLA says nothing about its codegen target at run time. The GPU adapter says "cuda:sm_<major><minor>".
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw
from adapters.capabilities import no_cuda_reason
from adapters.jax_grad import JaxGradMixin
from refconv import hardware, padding
from refconv.spec import ConvSpec, SpecError

PRECISIONS = ("highest", "high", "default")
# XLA:CPU's vector levels as refconv names them, each with the /proc/cpuinfo flag it needs. XLA's own
# --xla_cpu_max_isa names above AVX512 (AVX512_VNNI, AVX512_BF16, AMX, AMX_FP16) add instructions, not width.
XLA_LEVELS = {"sse4_2": "sse4_2", "avx": "avx", "avx2": "avx2", "avx512": "avx512f"}
XLA_SETTINGS_SOURCE = "derived: the CPU's widest vector ISA, capped by XLA_FLAGS --xla_cpu_max_isa"


def xla_level(env: dict[str, str] | None = None, flags: frozenset[str] | set[str] | None = None) -> str:
    """XLA:CPU's vector level here: the CPU's widest, capped by --xla_cpu_max_isa ('' off x86)."""
    xla_flags = (os.environ if env is None else env).get("XLA_FLAGS", "")
    flags = hardware.cpu_flags() if flags is None else flags
    have = [level for level, flag in XLA_LEVELS.items() if flag in flags]
    cap = re.search(r"--xla_cpu_max_isa=(\w+)", xla_flags)
    if cap and have:
        name = cap.group(1).lower()
        name = "avx512" if name.startswith(("avx512", "amx")) else name
        if name in XLA_LEVELS:
            order = list(XLA_LEVELS)
            have = [level for level in have if order.index(level) <= order.index(name)]
    return have[-1] if have else ""


def xla_isa() -> str:
    """The `isa` text of XLA:CPU's kernels here: 'xla:avx512' ('xla' off x86)."""
    level = xla_level()
    return f"xla:{level}" if level else "xla"


class JaxAdapter(JaxGradMixin, PreparedAdapter):
    name = "jax"
    platform = "cpu"

    def __init__(self, precision: str | None = None) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)
        self.jax = jax
        self.precision: Any = None
        if precision is not None:
            if precision not in PRECISIONS:
                choices = ", ".join(PRECISIONS)
                raise SpecError(f"{self.name} option precision must be one of {choices}, got {precision!r}")
            self.precision = jax.lax.Precision[precision.upper()]
            self.name = f"{type(self).name}:precision={precision}"
        self.device = jax.devices(self.platform)[0]

    def version(self) -> str:
        import jaxlib

        return f"{self.jax.__version__} (jaxlib {jaxlib.__version__})"

    def settings(self) -> dict[str, Any]:
        config: Any = self.jax.config  # flags are dynamic attributes, invisible to type checkers
        return {
            "device": str(self.device),
            "precision_argument": "(none)" if self.precision is None else str(self.precision),
            "jax_default_matmul_precision": str(config.jax_default_matmul_precision),
            "jax_enable_x64": bool(config.jax_enable_x64),
            **({"XLA_FLAGS": os.environ.get("XLA_FLAGS", "(unset)"), "xla_isa_source": XLA_SETTINGS_SOURCE}
               if self.platform == "cpu" else {}),
        }

    def isa(self, spec: ConvSpec | None) -> str:
        """XLA:CPU's vector level (module docstring); the same for every case."""
        return xla_isa()

    def supports(self, spec: ConvSpec) -> str | None:
        if spec.layout == "channels_last":
            return "channels_last is a PyTorch memory format; JAX takes any logical layout via dimension_numbers"
        return self.grad_reason(spec)

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        jax = self.jax
        nchw = spec.layout == "NCHW"
        dims = ("NCHW", "OIHW", "NCHW") if nchw else ("NHWC", "HWIO", "NHWC")
        xj = jax.device_put(nhwc_to_nchw(x) if nchw else x, self.device)
        wj = jax.device_put(hwio_to_oihw(w) if nchw else w, self.device)
        bj = None if b is None else jax.device_put(b.reshape((1, -1, 1, 1) if nchw else (1, 1, 1, -1)), self.device)
        pad = padding.for_jax(spec)

        def conv(xa: Any, wa: Any, ba: Any) -> Any:
            y = jax.lax.conv_general_dilated(
                xa, wa, window_strides=spec.strides, padding=pad, rhs_dilation=spec.dilations,
                dimension_numbers=dims, feature_group_count=spec.groups, precision=self.precision,
            )
            if ba is not None:
                y = y + ba
            if spec.activation == "relu":
                y = jax.nn.relu(y)
            return y

        compiled = jax.jit(conv).lower(xj, wj, bj).compile()  # compile outside the timed call

        def call() -> Any:
            return compiled(xj, wj, bj).block_until_ready()

        def fetch(y: Any) -> np.ndarray:
            out = np.asarray(y)
            return nchw_to_nhwc(out) if nchw else out

        return Prepared(call, fetch)


class JaxGpuAdapter(JaxAdapter):
    """The same convolution on the first CUDA GPU, at JAX's default (TF32-permitting) precision."""

    name = "jax-gpu"
    platform = "gpu"

    @staticmethod
    def unavailable_reason(options: dict[str, str]) -> str | None:
        """No CUDA device or no JAX CUDA plugin, judged without importing jax."""
        return no_cuda_reason("jax")

    def isa(self, spec: ConvSpec | None) -> str:
        """The GPU's compute capability: cuda:sm_<major><minor> ('cuda' where JAX does not say)."""
        capability = str(getattr(self.device, "compute_capability", "")).replace(".", "")
        return f"cuda:sm_{capability}" if capability else "cuda"
