"""The training ops of the `jax` adapters (a mixin): jax.vjp of the forward call, and lax.conv_transpose.

- grad_input / grad_filter: `jax.vjp` of the forward adapter's lax.conv_general_dilated with respect to x
  (at zeros: the input gradient does not depend on x) or to the filter (at zeros), jitted and compiled
  outside the timed call.
- transpose: lax.conv_transpose(y, w, strides, padding, rhs_dilation, transpose_kernel=True) with the
  padding of refconv.grad_padding.jax_transpose ('SAME' / 'VALID' where they give the case's size, else
  the forward pairs with use_consistent_padding=True). It has no feature_group_count: grouped cases are
  declined.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import OpsFromPrepared, Prepared, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw
from refconv import padding
from refconv.grad_padding import jax_transpose
from refconv.spec import ConvSpec


class JaxGradMixin(OpsFromPrepared):
    """grad_input, grad_filter and transpose for JaxAdapter (needs jax, device, precision)."""

    jax: Any
    device: Any
    precision: Any

    def grad_reason(self, spec: ConvSpec) -> str | None:
        """What the training ops cannot express (on top of the forward's supports)."""
        if spec.op == "transpose" and spec.groups != 1:
            return "jax.lax.conv_transpose has no feature_group_count (grouped transposed conv)"
        return None

    def _dims(self, spec: ConvSpec) -> tuple[str, str, str]:
        return ("NCHW", "OIHW", "NCHW") if spec.layout == "NCHW" else ("NHWC", "HWIO", "NHWC")

    def _put(self, a: np.ndarray, spec: ConvSpec, kernel: bool = False) -> Any:
        if spec.layout == "NCHW":
            a = hwio_to_oihw(a) if kernel else nhwc_to_nchw(a)
        return self.jax.device_put(a, self.device)

    def _fetch(self, spec: ConvSpec, kernel: bool = False) -> Any:
        def fetch(t: Any) -> np.ndarray:
            out = np.asarray(t)
            if spec.layout != "NCHW":
                return out
            return np.ascontiguousarray(out.transpose(2, 3, 1, 0)) if kernel else nchw_to_nhwc(out)

        return fetch

    def _conv(self, spec: ConvSpec) -> Any:
        lax, pad, dims = self.jax.lax, padding.for_jax(spec), self._dims(spec)

        def conv(x: Any, w: Any) -> Any:
            return lax.conv_general_dilated(x, w, window_strides=spec.strides, padding=pad,
                                            rhs_dilation=spec.dilations, dimension_numbers=dims,
                                            feature_group_count=spec.groups, precision=self.precision)

        return conv

    def _compiled(self, fn: Any, *args: Any) -> Prepared:
        compiled = self.jax.jit(fn).lower(*args).compile()  # compile outside the timed call
        return Prepared(lambda: compiled(*args).block_until_ready(), np.asarray)

    def prepare_grad_input(self, dy: np.ndarray, w: np.ndarray, spec: ConvSpec) -> Prepared:
        jax, conv = self.jax, self._conv(spec)

        def grad(x: Any, w: Any, dy: Any) -> Any:
            return jax.vjp(lambda x_: conv(x_, w), x)[1](dy)[0]

        x0 = self._put(np.zeros(spec.input_shape, dtype=w.dtype), spec)
        p = self._compiled(grad, x0, self._put(w, spec, kernel=True), self._put(dy, spec))
        return Prepared(p.call, self._fetch(spec))

    def prepare_grad_filter(self, x: np.ndarray, dy: np.ndarray, spec: ConvSpec) -> Prepared:
        jax, conv = self.jax, self._conv(spec)

        def grad(x: Any, w: Any, dy: Any) -> Any:
            return jax.vjp(lambda w_: conv(x, w_), w)[1](dy)[0]

        w0 = self._put(np.zeros(spec.kernel_shape, dtype=x.dtype), spec, kernel=True)
        p = self._compiled(grad, self._put(x, spec), w0, self._put(dy, spec))
        return Prepared(p.call, self._fetch(spec, kernel=True))

    def prepare_transpose(self, y: np.ndarray, w: np.ndarray, spec: ConvSpec) -> Prepared:
        lax, dims = self.jax.lax, self._dims(spec)
        pad, consistent = jax_transpose(spec)

        def transpose(y: Any, w: Any) -> Any:
            return lax.conv_transpose(y, w, strides=spec.strides, padding=pad, rhs_dilation=spec.dilations,
                                      dimension_numbers=dims, transpose_kernel=True, precision=self.precision,
                                      use_consistent_padding=consistent)

        p = self._compiled(transpose, self._put(y, spec), self._put(w, spec, kernel=True))
        return Prepared(p.call, self._fetch(spec))

