"""`tf`: tf.nn.conv2d on the CPU, with tf.nn.bias_add and tf.nn.relu.

Variants: `tf:onednn=off` sets TF_ENABLE_ONEDNN_OPTS=0, which TensorFlow reads only at import time,
so the runner gives each variant its own worker process. `set_onednn` (shared with the `keras` adapter)
refuses a setting that a TensorFlow already imported in the process would not honour.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter, nchw_to_nhwc, nhwc_to_nchw
from adapters.tensorflow_grad import TFGradMixin
from refconv import padding
from refconv.spec import ConvSpec, SpecError

ONEDNN = {"on": "1", "off": "0"}
# "The Conv2D op currently only supports the NHWC tensor format on the CPU" for these dtypes (checked on 2.21).
NHWC_ONLY = ("float16", "float64")


def onednn_in_force() -> bool | None:
    """Does this process's TensorFlow run oneDNN kernels? None while TensorFlow is not imported."""
    if "tensorflow" not in sys.modules:
        return None
    try:  # TF's own answer: the TF_ENABLE_ONEDNN_OPTS it read (its default depends on the CPU's features)
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # another build: the variable as it stands is the best guess of what TF read
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0"
    return bool(_pywrap_util_port.IsMklEnabled())


def set_onednn(adapter: str, onednn: str) -> str:
    """Set TF_ENABLE_ONEDNN_OPTS for `adapter:onednn=<on|off>` before TensorFlow's import; returns the label."""
    if onednn not in ONEDNN:
        raise SpecError(f"{adapter} option onednn must be 'on' or 'off', got {onednn!r}")
    in_force = onednn_in_force()
    if in_force is not None and in_force != (onednn == "on"):
        # TF reads the variable once: setting it now would label rows with a setting that did not run
        raise SpecError(f"{adapter}:onednn={onednn} cannot take effect: TensorFlow is already imported in this "
                        f"process with oneDNN {'on' if in_force else 'off'} (it reads TF_ENABLE_ONEDNN_OPTS only "
                        f"at import); run the variant in its own worker process (not --no-isolation)")
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = ONEDNN[onednn]
    return f"{adapter}:onednn={onednn}"


class TFAdapter(TFGradMixin, PreparedAdapter):
    name = "tf"

    def __init__(self, onednn: str | None = None) -> None:
        if onednn is not None:
            self.name = set_onednn("tf", onednn)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        self.tf = tf

    def version(self) -> str:
        return str(self.tf.__version__)

    def settings(self) -> dict[str, Any]:
        return {
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: on)"),
            "onednn_in_force": onednn_in_force(),
            "intra_op_threads": self.tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": self.tf.config.threading.get_inter_op_parallelism_threads(),
        }

    def supports(self, spec: ConvSpec) -> str | None:
        if spec.layout == "channels_last":
            return "channels_last is a PyTorch memory format; TensorFlow takes NHWC or NCHW"
        if spec.layout == "NCHW" and os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
            return "TensorFlow's CPU Conv2D supports NCHW only through oneDNN, which TF_ENABLE_ONEDNN_OPTS=0 turns off"
        if spec.layout == "NCHW" and spec.dtype in NHWC_ONLY:
            return f"TensorFlow's CPU Conv2D supports NCHW only through oneDNN for float32/bfloat16, not {spec.dtype}"
        return None

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        tf = self.tf
        fmt = "NCHW" if spec.layout == "NCHW" else "NHWC"
        tx = tf.constant(nhwc_to_nchw(x) if fmt == "NCHW" else x)
        tw = tf.constant(w)
        tb = None if b is None else tf.constant(b)
        sh, sw = spec.strides
        dh, dw = spec.dilations
        strides = [1, 1, sh, sw] if fmt == "NCHW" else [1, sh, sw, 1]
        dilations = [1, 1, dh, dw] if fmt == "NCHW" else [1, dh, dw, 1]
        pad = padding.for_tf(spec, fmt)

        def call() -> Any:
            y = tf.nn.conv2d(tx, tw, strides=strides, padding=pad, data_format=fmt, dilations=dilations)
            if tb is not None:
                y = tf.nn.bias_add(y, tb, data_format=fmt)
            if spec.activation == "relu":
                y = tf.nn.relu(y)
            return y

        def fetch(y: Any) -> np.ndarray:
            out = y.numpy()
            return nchw_to_nhwc(out) if fmt == "NCHW" else out

        return Prepared(call, fetch)
