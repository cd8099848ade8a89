"""The training ops of the `keras` adapter (a mixin): gradients through the Conv2D layer, and Conv2DTranspose.

- grad_input / grad_filter: tf.GradientTape around the adapter's own model (Input, [ZeroPadding2D], Conv2D)
  watching the input (zeros) or the layer's `kernel` variable (built with zeros), with dy as the output
  gradient (the TensorFlow backend).
- transpose: keras.layers.Conv2DTranspose(filters=c_in, kernel_size, strides, padding 'same'/'valid',
  output_padding, dilation_rate, use_bias=False), whose kernel (kh, kw, filters, in_channels) is the forward
  HWIO filter as is; padding and output_padding come from refconv.grad_padding.keras_transpose. Keras cannot
  express explicit pads, groups, or sizes its output_padding (< stride) cannot reach: declined with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import OpsFromPrepared, Prepared, nchw_to_nhwc, nhwc_to_nchw
from refconv.grad_padding import keras_transpose
from refconv.padding import output_hw
from refconv.spec import ConvSpec


class KerasGradMixin(OpsFromPrepared):
    """grad_input, grad_filter and transpose for KerasAdapter (TensorFlow backend)."""

    keras: Any

    def grad_reason(self, spec: ConvSpec) -> str | None:
        if spec.op in ("grad_input", "grad_filter") and self.keras.backend.backend() != "tensorflow":
            return "the keras adapter takes gradients with tf.GradientTape (TensorFlow backend only)"
        if spec.op != "transpose":
            return None
        if spec.groups != 1:
            return "keras.layers.Conv2DTranspose has no groups argument"
        found = keras_transpose(spec)
        return found if isinstance(found, str) else None

    def _tensor(self, a: np.ndarray, spec: ConvSpec) -> Any:
        import tensorflow as tf

        return tf.constant(nhwc_to_nchw(a) if spec.layout == "NCHW" else a)

    def _nhwc(self, t: Any, spec: ConvSpec) -> np.ndarray:
        out = t.numpy()
        return nchw_to_nhwc(out) if spec.layout == "NCHW" else out

    def _tape(self, model: Any, x: Any, wrt: Any, dy: Any) -> Any:
        import tensorflow as tf

        def call() -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = model(x, training=False)
            return tape.gradient(y, wrt, output_gradients=dy)

        return call

    def prepare_grad_input(self, dy: np.ndarray, w: np.ndarray, spec: ConvSpec) -> Prepared:
        model = self.build(w, None, spec)  # type: ignore[attr-defined]
        x0 = self._tensor(np.zeros(spec.input_shape, dtype=w.dtype), spec)
        return Prepared(self._tape(model, x0, x0, self._tensor(dy, spec)), lambda g: self._nhwc(g, spec))

    def prepare_grad_filter(self, x: np.ndarray, dy: np.ndarray, spec: ConvSpec) -> Prepared:
        model = self.build(np.zeros(spec.kernel_shape, dtype=x.dtype), None, spec)  # type: ignore[attr-defined]
        kernel = model.layers[-1].kernel
        return Prepared(self._tape(model, self._tensor(x, spec), kernel, self._tensor(dy, spec)), lambda g: g.numpy())

    def prepare_transpose(self, y: np.ndarray, w: np.ndarray, spec: ConvSpec) -> Prepared:
        found = keras_transpose(spec)
        assert not isinstance(found, str), found  # supports() declined it
        pad, output_padding = found
        fmt = "channels_first" if spec.layout == "NCHW" else "channels_last"
        ho, wo = output_hw(spec)
        shape = (spec.c_out, ho, wo) if fmt == "channels_first" else (ho, wo, spec.c_out)
        layer = self.keras.layers.Conv2DTranspose(
            filters=spec.c_in, kernel_size=(spec.kh, spec.kw), strides=spec.strides, padding=pad,
            output_padding=output_padding, data_format=fmt, dilation_rate=spec.dilations, use_bias=False,
            dtype=spec.dtype,
        )
        model = self.keras.Sequential([self.keras.Input(shape=shape, batch_size=spec.n, dtype=spec.dtype), layer])
        layer.set_weights([w])
        ty = self.keras.ops.convert_to_tensor(nhwc_to_nchw(y) if fmt == "channels_first" else y, dtype=spec.dtype)

        def fetch(t: Any) -> np.ndarray:
            out = self.keras.ops.convert_to_numpy(t)
            return nchw_to_nhwc(out) if fmt == "channels_first" else out

        return Prepared(lambda: model(ty, training=False), fetch)

