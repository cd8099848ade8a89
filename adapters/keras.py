"""`keras`: the layer API, keras.layers.Conv2D built for the spec, weights set from HWIO.

Keras 3 runs on the TensorFlow backend here: the constructor sets KERAS_BACKEND=tensorflow when it is
unset (Keras reads it at import, so this adapter runs in its own worker). The layer gets filters,
kernel_size, strides, padding 'same'/'valid', dilation_rate, groups, use_bias, activation and
data_format (channels_first for NCHW cases); explicit pads put keras.layers.ZeroPadding2D first, as
users do. Keras' Conv2D kernel is (kh, kw, c_in / groups, c_out), TensorFlow's HWIO, so set_weights
takes w as is. Each layer computes in the case's dtype (its dtype policy is the case dtype).

Variants: `keras:onednn=off|on` sets TF_ENABLE_ONEDNN_OPTS before Keras imports TensorFlow, as `tf:onednn=...`
does (adapters.tensorflow.set_kernels: TF reads it only at import, so each variant runs in its own worker, and
a TensorFlow already imported with the other setting is an error). The Conv2D layer reaches the same CPU
kernels as tf.nn.conv2d, so the variant is the toggle that witnesses TF's oneDNN deviations on keras rows.
`keras:isa=<level>` caps oneDNN's kernels (ONEDNN_MAX_CPU_ISA before the import), as `tf:isa=<level>` does
(adapters.tensorflow.set_kernels); it combines: `keras:isa=avx2:onednn=on`.

Kernels (`isa(spec)`): those of TensorFlow for the case (adapters.tensorflow.kernels: "onednn:<level>" or
"eigen"), except grouped and depthwise convolutions, which Keras compiles with XLA ("grouped convolutions are
broken on CPU without XLA", keras/src/backend/tensorflow/nn.py `conv`): "xla:<level>" (adapters.jax.xla_isa).
Measured with ONEDNN_VERBOSE=1: no oneDNN primitive ran for any grouped case, and grouped channels_first cases
run with oneDNN off and in float64 too. On another Keras backend, "keras-<backend>" (refconv does not know its
kernels).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter, nchw_to_nhwc, nhwc_to_nchw
from adapters.jax import xla_isa
from adapters.keras_grad import KerasGradMixin
from adapters.tensorflow import (
    check_isa_in_force,
    isa_reason,
    kernel_settings,
    kernels,
    nchw_reason,
    onednn_in_force,
    set_kernels,
)
from refconv import hardware
from refconv.spec import ConvSpec, SpecError


def unavailable_reason(options: dict[str, str]) -> str | None:
    """A cap this CPU cannot run, or one for a oneDNN that is off, named without importing TensorFlow."""
    return isa_reason(options)


class KerasAdapter(KerasGradMixin, PreparedAdapter):
    name = "keras"

    def __init__(self, onednn: str | None = None, isa: str | None = None) -> None:
        self.name = set_kernels("keras", onednn, isa)
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        for option, value in (("onednn", onednn), ("isa", isa)):
            if value is not None and keras.backend.backend() != "tensorflow":
                raise SpecError(f"keras option {option} steers TensorFlow's kernels, but Keras runs on the "
                                f"{keras.backend.backend()} backend here (KERAS_BACKEND)")
        self.keras = keras
        check_isa_in_force("keras", isa)
        self.onednn_level = hardware.onednn_level_in_force()

    def version(self) -> str:
        return f"{self.keras.__version__} ({self.keras.backend.backend()} backend)"

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keras_backend": self.keras.backend.backend(),
            "dtype_policy": "case dtype",
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: on)"),
        }
        if self.keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            out["onednn_in_force"] = onednn_in_force()
            out["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
            out.update(kernel_settings(self.onednn_level))
        return out

    def isa(self, spec: ConvSpec | None) -> str:
        """TensorFlow's kernels for the case's dtype (module docstring)."""
        backend = self.keras.backend.backend()
        if backend != "tensorflow":
            return f"keras-{backend}"
        if spec is not None and self.through_xla(spec):
            return xla_isa()
        return kernels(spec, self.onednn_level, explicit_op=False)  # explicit pads: a ZeroPadding2D layer first

    def through_xla(self, spec: ConvSpec) -> bool:
        """Does Keras compile this case's Conv2D with XLA? (Grouped: its input channels differ from the kernel's.)"""
        return spec.groups > 1 and spec.op != "transpose"

    def supports(self, spec: ConvSpec) -> str | None:
        if spec.layout == "channels_last":
            return "channels_last is a PyTorch memory format; Keras takes channels_last (NHWC) or channels_first data"
        if spec.strides != (1, 1) and spec.dilations != (1, 1):
            # keras.layers.Conv2D's constructor refuses the combination outright (checked on Keras 3.15).
            return "keras.layers.Conv2D refuses `strides > 1` in conjunction with `dilation_rate > 1`"
        if spec.layout == "NCHW" and self.keras.backend.backend() == "tensorflow" and not self.through_xla(spec):
            # Keras passes channels_first to tf.nn.convolution, which raises UnimplementedError on the CPU
            # where the case does not go through oneDNN (XLA takes it).
            reason = nchw_reason(spec.dtype)
            if reason:
                return f"Keras passes data_format channels_first to TensorFlow: {reason}"
        return self.grad_reason(spec)

    def build(self, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Any:
        """keras.Sequential([Input, [ZeroPadding2D], Conv2D]) with the case's weights."""
        layers = self.keras.layers
        fmt = "channels_first" if spec.layout == "NCHW" else "channels_last"
        shape = (spec.c_in, spec.h, spec.w) if fmt == "channels_first" else (spec.h, spec.w, spec.c_in)
        stack: list[Any] = [self.keras.Input(shape=shape, batch_size=spec.n, dtype=spec.dtype)]
        if not isinstance(spec.padding, str):
            stack.append(layers.ZeroPadding2D(padding=spec.padding, data_format=fmt, dtype=spec.dtype))
        conv = layers.Conv2D(
            filters=spec.c_out, kernel_size=(spec.kh, spec.kw), strides=spec.strides,
            padding="valid" if not isinstance(spec.padding, str) else spec.padding.lower(),
            data_format=fmt, dilation_rate=spec.dilations, groups=spec.groups, use_bias=spec.bias,
            activation=spec.activation, dtype=spec.dtype,
        )
        model = self.keras.Sequential([*stack, conv])
        conv.set_weights([w] if b is None else [w, b])
        return model

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        nchw = spec.layout == "NCHW"
        model = self.build(w, b, spec)
        tx = self.keras.ops.convert_to_tensor(nhwc_to_nchw(x) if nchw else x, dtype=spec.dtype)

        def fetch(y: Any) -> np.ndarray:
            out = self.keras.ops.convert_to_numpy(y)
            return nchw_to_nhwc(out) if nchw else out

        return Prepared(lambda: model(tx, training=False), fetch)
