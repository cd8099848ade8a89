"""`jax`: jax.lax.conv_general_dilated on the CPU, jitted with the bias add and ReLU.

float64 needs JAX's x64 mode, which is off by default: the constructor turns it on with
`jax.config.update("jax_enable_x64", True)` (process-wide, so JAX runs in its own worker).
NHWC cases use dimension_numbers ('NHWC', 'HWIO', 'NHWC'); NCHW cases are called with an NCHW input
and an OIHW kernel, ('NCHW', 'OIHW', 'NCHW'). Padding comes from refconv.padding.for_jax; groups map to
feature_group_count, dilations to rhs_dilation.
Variants: `jax:precision=highest|default` sets the `precision` argument of the convolution.
`jax-gpu` runs the same on the first GPU, with `jax-gpu:precision=highest`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw
from adapters.capabilities import no_cuda_reason
from adapters.jax_grad import JaxGradMixin
from refconv import padding
from refconv.spec import ConvSpec, SpecError

PRECISIONS = ("highest", "high", "default")


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
        }

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
