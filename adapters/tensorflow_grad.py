"""The training ops of the `tf` adapter (a mixin): tf.GradientTape over tf.nn.conv2d, tf.nn.conv2d_transpose.

- grad_input / grad_filter: the tape watches x (zeros: the input gradient does not depend on x) or the
  filter (zeros) through the same tf.nn.conv2d call as the forward adapter, and `tape.gradient(y, ., dy)`
  returns the gradient; the timed call runs the forward and the backward (eager TensorFlow records the
  tape during the forward).
- transpose: tf.nn.conv2d_transpose(y, filters=w, output_shape=the forward input's shape, strides,
  padding=the forward padding, dilations): TensorFlow's own convention, the reference's.
What these ops accept is TFAdapter.supports (NCHW only through oneDNN). Their `isa` is the kernels of the
backward op, which computes the result (adapters.tensorflow.kernels): Conv2DBackpropInput/Filter with explicit
padding run Eigen's kernels even with oneDNN on, while the tape's forward tf.nn.conv2d runs oneDNN's; so a
gradient row can say "eigen" and still fail in the forward's oneDNN kernel (bfloat16 under isa=avx2, say).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import OpsFromPrepared, Prepared, nchw_to_nhwc, nhwc_to_nchw
from refconv import padding
from refconv.spec import ConvSpec


class TFGradMixin(OpsFromPrepared):
    """grad_input, grad_filter and transpose for TFAdapter."""

    tf: Any

    def _args(self, spec: ConvSpec) -> dict[str, Any]:
        fmt = "NCHW" if spec.layout == "NCHW" else "NHWC"
        (sh, sw), (dh, dw) = spec.strides, spec.dilations
        return {
            "strides": [1, 1, sh, sw] if fmt == "NCHW" else [1, sh, sw, 1], "padding": padding.for_tf(spec, fmt),
            "data_format": fmt, "dilations": [1, 1, dh, dw] if fmt == "NCHW" else [1, dh, dw, 1],
        }

    def _in(self, a: np.ndarray, spec: ConvSpec) -> Any:
        return self.tf.constant(nhwc_to_nchw(a) if spec.layout == "NCHW" else a)

    def _out(self, t: Any, spec: ConvSpec) -> np.ndarray:
        out = t.numpy()
        return nchw_to_nhwc(out) if spec.layout == "NCHW" else out

    def prepare_grad_input(self, dy: np.ndarray, w: np.ndarray, spec: ConvSpec) -> Prepared:
        tf, args = self.tf, self._args(spec)
        x0, tw, tdy = self._in(np.zeros(spec.input_shape, dtype=w.dtype), spec), tf.constant(w), self._in(dy, spec)

        def call() -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x0)
                y = tf.nn.conv2d(x0, tw, **args)
            return tape.gradient(y, x0, output_gradients=tdy)

        return Prepared(call, lambda g: self._out(g, spec))

    def prepare_grad_filter(self, x: np.ndarray, dy: np.ndarray, spec: ConvSpec) -> Prepared:
        tf, args = self.tf, self._args(spec)
        tx, tw0, tdy = self._in(x, spec), tf.constant(np.zeros(spec.kernel_shape, dtype=x.dtype)), self._in(dy, spec)

        def call() -> Any:
            with tf.GradientTape() as tape:
                tape.watch(tw0)
                y = tf.nn.conv2d(tx, tw0, **args)
            return tape.gradient(y, tw0, output_gradients=tdy)

        return Prepared(call, lambda g: g.numpy())

    def prepare_transpose(self, y: np.ndarray, w: np.ndarray, spec: ConvSpec) -> Prepared:
        tf, args = self.tf, self._args(spec)
        ty, tw = self._in(y, spec), tf.constant(w)
        n, h, wd, c = spec.input_shape
        shape = [n, c, h, wd] if spec.layout == "NCHW" else [n, h, wd, c]
        return Prepared(lambda: tf.nn.conv2d_transpose(ty, tw, output_shape=shape, **args),
                        lambda t: self._out(t, spec))

