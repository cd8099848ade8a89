"""`tf`: tf.nn.conv2d on the CPU, with tf.nn.bias_add and tf.nn.relu.

Variants (each label runs in its own worker process: TensorFlow and oneDNN read these variables once):
- `tf:onednn=on|off` sets TF_ENABLE_ONEDNN_OPTS before TensorFlow's import (its default depends on the CPU:
  refconv.hardware.tf_onednn_default);
- `tf:isa=<level>` sets ONEDNN_MAX_CPU_ISA (oneDNN's upper-case name of a level of refconv.hardware.ONEDNN_LEVELS)
  before the import, capping the kernels oneDNN JIT-compiles. It needs oneDNN on: where TensorFlow's default here
  is off, say so (`tf:isa=avx2:onednn=on`). A level this CPU cannot run is refused (capping works only downward).
`set_kernels` (shared with the `keras` adapter) checks both options before it sets either, and refuses a setting
that a TensorFlow already imported in the process would not honour.

Kernels (`isa(spec)`, refconv/hardware.py): with oneDNN on, "onednn:<level>" for the dtypes TensorFlow hands to
oneDNN on this CPU (`onednn_dtypes`), "eigen" for the others (float64 always) and for the gradients and
conv2d_transpose of explicit-padding cases (`kernels`); with oneDNN off, "eigen". An empty output is still
"onednn": TensorFlow's oneDNN op answers it without creating a primitive. TensorFlow exports no oneDNN symbols to
ask the level of, and its oneDNN verbose output cannot be turned off once on, so the level is oneDNN's documented
rule (hardware.onednn_level_in_force: the CPU's highest level, capped by ONEDNN_MAX_CPU_ISA); tests/test_isa.py
checks it against TensorFlow's own oneDNN verbose header.
NCHW (supports): TensorFlow's CPU Conv2D and its gradients run NCHW only through oneDNN, so NCHW is declined
where oneDNN is off in this TensorFlow or does not take the case's dtype (TF's own answers, not the variable's text).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from adapters.base import Prepared, PreparedAdapter, nchw_to_nhwc, nhwc_to_nchw
from adapters.tensorflow_grad import TFGradMixin
from refconv import hardware, padding
from refconv.spec import ConvSpec, SpecError

ONEDNN = {"on": "1", "off": "0"}


def onednn_in_force() -> bool | None:
    """Does this process's TensorFlow run oneDNN kernels? None while TensorFlow is not imported."""
    if "tensorflow" not in sys.modules:
        return None
    try:  # TF's own answer: the TF_ENABLE_ONEDNN_OPTS it read (its default depends on the CPU's features)
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # another build: the variable as it stands is the best guess of what TF read
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0"
    return bool(_pywrap_util_port.IsMklEnabled())


def onednn_dtypes(flags: frozenset[str] | set[str] | None = None) -> tuple[str, ...]:
    """The case dtypes TensorFlow hands to oneDNN on a CPU with these flags (this one's by default).

    TensorFlow's IsDataTypeSupportedByOneDNNOnThisCPU (tensorflow/core/util/util.cc), which reads CPUID, not
    ONEDNN_MAX_CPU_ISA; float64 has no oneDNN kernel and runs Eigen's. Measured with ONEDNN_VERBOSE=all on this
    Sapphire Rapids (forward, both gradients and conv2d_transpose, NHWC and NCHW): float32, bfloat16 and float16
    ran oneDNN convolutions, float64 none.
    """
    flags = hardware.cpu_flags() if flags is None else flags
    out = ["float32"]
    if "avx512f" in flags or "avx_ne_convert" in flags:
        out.append("bfloat16")
    if ("avx512bw" in flags and ("avx512_fp16" in flags or "amx_fp16" in flags)) or "avx_ne_convert" in flags:
        out.append("float16")
    return tuple(out)


def kernels(spec: ConvSpec | None, level: str, explicit_op: bool = True) -> str:
    """The `isa` of a case (None: the general answer) in this process's TensorFlow.

    `explicit_op`: explicit pads reach the op as padding='EXPLICIT' (tf.nn.conv2d; Keras pads with a layer
    first). TensorFlow's eager oneDNN rewrite takes Conv2D always but Conv2DBackpropInput/Filter only without
    EXPLICIT padding (mkl_eager_op_rewrite.cc, RewriteConv2D); measured: the gradients and conv2d_transpose of
    every explicit-padding case ran no oneDNN backward primitive, Eigen's kernels instead.
    """
    if not onednn_in_force():
        return "eigen"
    if spec is None:
        return hardware.onednn_isa(level)
    if spec.dtype not in onednn_dtypes():
        return "eigen"
    if explicit_op and spec.op != "conv2d" and spec.padding_kind == "EXPLICIT":
        return "eigen"
    return hardware.onednn_isa(level)


def nchw_reason(dtype: str) -> str | None:
    """Why TensorFlow's CPU Conv2D cannot take this dtype in NCHW here (it runs NCHW only through oneDNN)."""
    if not onednn_in_force():
        # "The Conv2D op currently only supports the NHWC tensor format on the CPU" (Eigen; checked on 2.21)
        return ("TensorFlow's CPU Conv2D supports NCHW only through oneDNN, which is off in this TensorFlow "
                f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(unset)')}; TF's default on "
                "this CPU)")
    if dtype not in onednn_dtypes():
        return (f"TensorFlow's CPU Conv2D supports NCHW only through oneDNN, and TensorFlow hands {dtype} to Eigen "
                f"on this CPU (oneDNN takes {', '.join(onednn_dtypes())} here)")
    return None


def check_onednn(adapter: str, onednn: str) -> None:
    """Refuse `adapter:onednn=<value>` that is not on/off, or that a TensorFlow already imported would not honour."""
    if onednn not in ONEDNN:
        raise SpecError(f"{adapter} option onednn must be 'on' or 'off', got {onednn!r}")
    in_force = onednn_in_force()
    if in_force is not None and in_force != (onednn == "on"):
        # TF reads the variable once: setting it now would label rows with a setting that did not run
        raise SpecError(f"{adapter}:onednn={onednn} cannot take effect: TensorFlow is already imported in this "
                        f"process with oneDNN {'on' if in_force else 'off'} (it reads TF_ENABLE_ONEDNN_OPTS only "
                        f"at import); run the variant in its own worker process (not --no-isolation)")


def set_onednn(adapter: str, onednn: str) -> str:
    """Set TF_ENABLE_ONEDNN_OPTS for `adapter:onednn=<on|off>` before TensorFlow's import; returns the label."""
    check_onednn(adapter, onednn)
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = ONEDNN[onednn]
    return f"{adapter}:onednn={onednn}"


def isa_reason(options: dict[str, str]) -> str | None:
    """Why `isa=<level>` (with this `onednn`) cannot run here, judged without importing TensorFlow."""
    reason = hardware.cap_reason(options)
    if reason or "isa" not in options:
        return reason
    on = {"on": True, "off": False}.get(options.get("onednn", ""))
    if on is None:
        in_force = onednn_in_force()
        on = hardware.tf_onednn_expected() if in_force is None else in_force
    if not on:
        return f"isa={options['isa']}: isa caps oneDNN, which is off here; add onednn=on"
    return None


def unavailable_reason(options: dict[str, str]) -> str | None:
    """A cap this CPU cannot run, or one for a oneDNN that is off, named without importing TensorFlow."""
    return isa_reason(options)


def check_isa(adapter: str, isa: str, onednn: str | None) -> str:
    """The level of `adapter:isa=<level>`, refused where the CPU, oneDNN's state or an imported TensorFlow forbid."""
    reason = isa_reason({"isa": isa, **({} if onednn is None else {"onednn": onednn})})
    if reason:
        raise SpecError(f"{adapter}:{reason}" if reason.startswith("isa=") else f"{adapter} option isa: {reason}")
    level = hardware.check_cap(isa)
    if "tensorflow" in sys.modules and hardware.onednn_level_in_force() != level:
        # oneDNN reads the variable once, at its first kernel: a cap set now may or may not hold
        raise SpecError(f"{adapter}:isa={isa} cannot take effect: TensorFlow is already imported in this process "
                        f"with oneDNN at {hardware.onednn_level_in_force() or 'no level'} (oneDNN reads "
                        f"ONEDNN_MAX_CPU_ISA once); run the variant in its own worker process (not --no-isolation)")
    return level


def set_kernels(adapter: str, onednn: str | None, isa: str | None) -> str:
    """Check both options, then set their variables before TensorFlow's import; returns the label.

    The level first: an impossible level is the clearer line whatever the process's TensorFlow already did.
    """
    level = None if isa is None else check_isa(adapter, isa, onednn)
    if onednn is not None:
        check_onednn(adapter, onednn)
    if onednn is not None:
        set_onednn(adapter, onednn)
    if level is not None:
        os.environ["ONEDNN_MAX_CPU_ISA"] = level.upper()
    return variant_label(adapter, {"onednn": onednn, "isa": isa})


def variant_label(name: str, options: dict[str, str | None]) -> str:
    """The registry's label: name:key=value in key order (options given only)."""
    return name + "".join(f":{k}={v}" for k, v in sorted(options.items()) if v is not None)


def check_isa_in_force(adapter: str, isa: str | None) -> None:
    """After the import: a cap on a oneDNN that TensorFlow did not turn on would label rows falsely."""
    if isa is not None and not onednn_in_force():
        raise SpecError(f"{adapter}:isa={isa}: isa caps oneDNN, which is off here; add onednn=on")


def kernel_settings(level: str) -> dict[str, Any]:
    """What `isa` rests on, for settings(): the cap, the level and where it comes from, the oneDNN dtypes."""
    return {
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "(unset)"),
        "onednn_isa": level if onednn_in_force() else "(oneDNN off)",
        "onednn_isa_source": "derived: the CPU's highest oneDNN level capped by ONEDNN_MAX_CPU_ISA (oneDNN's "
                             "documented rule; TensorFlow exports no oneDNN call to ask)",
        "onednn_dtypes": list(onednn_dtypes()) if onednn_in_force() else [],
    }


class TFAdapter(TFGradMixin, PreparedAdapter):
    name = "tf"

    def __init__(self, onednn: str | None = None, isa: str | None = None) -> None:
        self.name = set_kernels("tf", onednn, isa)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        self.tf = tf
        check_isa_in_force("tf", isa)
        self.onednn_level = hardware.onednn_level_in_force()

    def version(self) -> str:
        return str(self.tf.__version__)

    def settings(self) -> dict[str, Any]:
        return {
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: on)"),
            "onednn_in_force": onednn_in_force(),
            "intra_op_threads": self.tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": self.tf.config.threading.get_inter_op_parallelism_threads(),
            **kernel_settings(self.onednn_level),
        }

    def isa(self, spec: ConvSpec | None) -> str:
        """oneDNN's level for the dtypes TF hands it, else Eigen (module docstring)."""
        return kernels(spec, self.onednn_level)

    def supports(self, spec: ConvSpec) -> str | None:
        if spec.layout == "channels_last":
            return "channels_last is a PyTorch memory format; TensorFlow takes NHWC or NCHW"
        if spec.layout == "NCHW":
            return nchw_reason(spec.dtype)
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
