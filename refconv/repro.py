"""Standalone repro scripts: `<run_dir>/repro/<case-id>__<adapter>.py` plus the inputs in `<case-id>.npz`.

A script needs only numpy and the one framework. It loads x, w, b from the npz beside it (bfloat16 is
stored as its uint16 bits with a flag, so neither side needs ml_dtypes), computes the expected output
with a few lines of plain NumPy in float64, calls the framework exactly as the adapter does (templates
for tf, torch, onnxruntime and keras below; any other adapter goes through `adapters.load(label).conv2d`),
and prints the discrepancy. Exit status: 1 when the finding reproduces, 0 when the framework now agrees, 2 when the
framework cannot be imported (a missing framework is not a reproduction), 3 when the output agrees but this machine
does not run the kernels the finding was seen on ("not reproducible on this CPU (needs ...)"), which is no fix.

The script records where the finding was seen (the row's `cpu_model`, `cpu_features` and `isa`), what a machine
needs to run the same kernels (the row's known deviation's hardware conditions where it has some, else the row's
kernels themselves) and the settings that avoid the bug (ONEDNN_MAX_CPU_ISA=<a level seen to pass>,
TF_ENABLE_ONEDNN_OPTS=0, torch.backends.mkldnn.enabled = False). It checks them itself, without refconv: this
CPU's /proc/cpuinfo flags (or REFCONV_REPRO_CPU_FLAGS, a stand-in CPU for tests: space-separated flags), the caps
ONEDNN_MAX_CPU_ISA and TF_ENABLE_ONEDNN_OPTS, and the framework's own answer (TensorFlow's IsMklEnabled(),
torch.backends.mkldnn, torch's ATen capability).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from refconv import hardware, padding
from refconv.compare import eps, overflow_threshold, tiny, tolerance_c
from refconv.repro_hardware import (
    KERNELS_ADAPTER,
    KERNELS_CPU,
    KERNELS_TF,
    KERNELS_TORCH,
    Seen,
    docstring_safe,
    level_name,
    seen,
    seen_block,
)
from refconv.repro_paths import REPRO_DIR, script_path
from refconv.repro_paths import safe_name as safe_name  # re-exported: the public name of refconv.repro
from refconv.spec import ConvSpec


def save_inputs(path: Path, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> None:
    """x, w, b in their dtype; bfloat16 as uint16 bits with bfloat16=True."""
    bf16 = x.dtype.name == "bfloat16"

    def plain(a: np.ndarray) -> np.ndarray:
        return a.view(np.uint16) if bf16 else a

    arrays = {"x": plain(x), "w": plain(w), "has_bias": np.array(b is not None), "bfloat16": np.array(bf16)}
    if b is not None:
        arrays["b"] = plain(b)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def write(run_dir: Path, spec: ConvSpec, label: str, message: str,
          x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *, row: Mapping[str, Any] | None = None,
          passing_levels: Iterable[str] = ()) -> str:
    """Write the inputs (once per case) and the script; returns the script's path relative to run_dir.

    `row`: the finding's row (its isa, cpu_model, cpu_features, known_deviation), recorded in the script so that a
    run on other kernels says "not reproducible on this CPU"; `passing_levels`: oneDNN levels that passed the case.
    """
    where = seen(label, row or {}, passing_levels=passing_levels)
    if spec.op != "conv2d":  # the training ops' inputs are (dy, w), (x, dy) or (y, w): refconv/grad_repro.py
        from refconv import grad_repro

        return grad_repro.write(run_dir, spec, label, message, x, w, where=where)
    folder = Path(run_dir) / REPRO_DIR
    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / f"{spec.id}.npz"
    if not npz.exists():
        save_inputs(npz, x, w, b)
    path = script_path(run_dir, spec.id, label)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(script(spec, label, message, where=where))
    tmp.replace(path)
    return str(path.relative_to(run_dir))


# --- the script ------------------------------------------------------------------------------

_HEADER = '''#!/usr/bin/env python3
"""Reproduce a refconv finding. Needs numpy and {needs}; run: python {name}

{message}
case {case_id}: {words}
{seen}
Exit status: 1 reproduces, 0 agrees with the reference (fixed), 2 cannot run here, 3 not reproducible on this CPU
(the output agrees, but this machine does not run the kernels it was seen on; REFCONV_REPRO_CPU_FLAGS="flag ..."
stands in for this CPU's /proc/cpuinfo flags).
"""
import os
import sys

import numpy as np

LABEL = {label!r}
CASE = {case_id!r}
STRIDES, DILATIONS, GROUPS = {strides!r}, {dilations!r}, {groups!r}
PADDING = {padding!r}  # "SAME", "VALID" or ((top, bottom), (left, right))
ACTIVATION = {activation!r}
DTYPE = {dtype!r}
EPS, TINY, C = {eps!r}, {tiny!r}, {c!r}  # tolerance: |err| <= C * (EPS * (|x| conv |w| + |b|) + TINY)
OVERFLOW = float({overflow!r})  # the smallest magnitude that rounds to Inf in DTYPE
{seen_block}

def errors(actual, expected, bound):
    """(abs error, bound ratio) as refconv judges them: NaN/Inf where the reference has them, overflow to Inf."""
    finite = np.isfinite(expected)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(actual - np.where(finite, expected, 0.0))
        ratio = err / (EPS * np.where(np.isfinite(bound), bound, 1.0) + TINY)
        big = finite & ~np.isfinite(bound)  # the bound overflowed: judged against the largest float64
        half = np.abs(actual * 0.5 - np.where(finite, expected, 0.0) * 0.5)
        ratio = np.where(big, half / (EPS * np.finfo(np.float64).max * 0.5), ratio)
        same = ~finite & ((actual == expected) | (np.isnan(actual) & np.isnan(expected)))
        tol = C * (EPS * np.where(np.isfinite(bound), bound, np.finfo(np.float64).max) + TINY)
        over = finite & np.isinf(actual) & (np.sign(actual) == np.sign(expected)) & (np.abs(expected) + tol >= OVERFLOW)
        ok = same | over
        err = np.where(ok, 0.0, np.where(finite, err, np.inf))
        ratio = np.where(ok, 0.0, np.where(finite, ratio, np.inf))
    err[np.isnan(err)] = np.inf
    ratio[np.isnan(ratio)] = np.inf
    return err, ratio
{load}

def same_pads(size, k, s, d):
    """TensorFlow's SAME: out = ceil(size / s); the odd pixel of padding goes after."""
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def reference(x, w, b):
    """Cross-correlation in float64: pad, then one matmul per kernel offset and group."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    (sh, sw), (dh, dw), g = STRIDES, DILATIONS, GROUPS
    kh, kw, cg, co = w.shape
    og = co // g
    if PADDING == "VALID":
        pads = ((0, 0), (0, 0))
    elif PADDING == "SAME":
        pads = (same_pads(x.shape[1], kh, sh, dh), same_pads(x.shape[2], kw, sw, dw))
    else:
        pads = PADDING
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    span_h, span_w = xp.shape[1] - (kh - 1) * dh - 1, xp.shape[2] - (kw - 1) * dw - 1
    ho, wo = (span_h // sh + 1 if span_h >= 0 else 0), (span_w // sw + 1 if span_w >= 0 else 0)
    out = np.zeros((x.shape[0], ho, wo, co))
    for i in range(kh if out.size else 0):
        for j in range(kw):
            patch = xp[:, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw, :]
            for k in range(g):
                out[..., k * og:(k + 1) * og] += patch[..., k * cg:(k + 1) * cg] @ w[i, j, :, k * og:(k + 1) * og]
    return out if b is None else out + b.astype(np.float64)

'''

# The inputs from the npz beside the script (repro/); `script(load=...)` swaps in inline inputs instead.
LOAD_NPZ = '''HERE = os.path.dirname(os.path.abspath(__file__))


def load_inputs():
    """x (NHWC), w (HWIO), b or None; bfloat16 cases come back as the exact float32 values."""
    data = np.load(os.path.join(HERE, {npz!r}))
    arrays = [data["x"], data["w"], data["b"] if bool(data["has_bias"]) else None]
    if bool(data["bfloat16"]):
        arrays = [None if a is None else (a.astype(np.uint32) << 16).view(np.float32) for a in arrays]
    return (*arrays, bool(data["bfloat16"]))

'''

_TF = '''
def framework_conv2d(x, w, b, bf16):
    """tf.nn.conv2d as refconv's `tf` adapter calls it."""
    {env}os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    fmt = {fmt!r}

    def tensor(a):
        t = tf.constant(a)
        return tf.cast(t, tf.bfloat16) if bf16 else t

    tx = tensor(x.transpose(0, 3, 1, 2) if fmt == "NCHW" else x)
    y = tf.nn.conv2d(tx, tensor(w), strides={strides!r}, padding={pad!r}, data_format=fmt, dilations={dilations!r})
    if b is not None:
        y = tf.nn.bias_add(y, tensor(b), data_format=fmt)
    if ACTIVATION == "relu":
        y = tf.nn.relu(y)
    y = y.numpy()  # in the dtype TF returned: main() checks it as refconv's comparison does
    return y.transpose(0, 2, 3, 1) if fmt == "NCHW" else y
'''

_TORCH = '''
def framework_conv2d(x, w, b, bf16):
    """torch.nn.functional.conv2d as refconv's `torch` adapter calls it (NCHW, OIHW, F.pad when asymmetric)."""
    {env}import torch
    import torch.nn.functional as F
    {threads}{mkldnn}
    fmt = torch.channels_last if {channels_last!r} else torch.contiguous_format

    def tensor(a):
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.to(torch.bfloat16) if bf16 else t

    tx = tensor(x).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    tw = tensor(w.transpose(3, 2, 0, 1)).contiguous(memory_format=fmt)
    tb = None if b is None else tensor(b)
    pre = {pre!r}  # F.pad's (left, right, top, bottom) first where the padding is asymmetric
    with torch.no_grad():
        if pre is not None:
            tx = F.pad(tx, pre)
        y = F.conv2d(tx, tw, tb, stride={strides!r}, padding={pad!r}, dilation={dilations!r}, groups={groups!r})
        if ACTIVATION == "relu":
            y = F.relu(y)
    # NumPy has no bfloat16: the values in float64, with the dtype torch returned for main() to check
    return y.permute(0, 2, 3, 1).to(torch.float64).numpy(), str(y.dtype).removeprefix("torch.")
'''

_GENERIC = '''
def framework_conv2d(x, w, b, bf16):
    """Through refconv's adapter LABEL itself (no standalone template for it)."""
    sys.path[:0] = {paths!r}
    import adapters
    from refconv.spec import ConvSpec

    if bf16:
        import ml_dtypes

        x, w, b = (None if a is None else a.astype(ml_dtypes.bfloat16) for a in (x, w, b))
    return np.asarray(adapters.load(LABEL).conv2d(x, w, b, ConvSpec.from_id(CASE)))  # its dtype: main() checks it
'''

_ORT = '''
def framework_conv2d(x, w, b, bf16):
    """One ONNX Conv node (NCHW, OIHW) run by onnxruntime's CPU provider, as refconv's `onnxruntime` adapter."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    elem = dict(float16=TensorProto.FLOAT16, float32=TensorProto.FLOAT, float64=TensorProto.DOUBLE)[DTYPE]
    feeds = dict(X=np.ascontiguousarray(x.transpose(0, 3, 1, 2)), W=np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    if b is not None:
        feeds["B"] = b
    inputs = [helper.make_tensor_value_info(k, elem, list(v.shape)) for k, v in feeds.items()]
    out = "Y" if ACTIVATION is None else "conv"
    nodes = [helper.make_node("Conv", list(feeds), [out], kernel_shape=list(w.shape[:2]), strides=list(STRIDES),
                              dilations=list(DILATIONS), group=GROUPS, **{pads!r})]
    if ACTIVATION == "relu":
        nodes.append(helper.make_node("Relu", ["conv"], ["Y"]))
    graph = helper.make_graph(nodes, "conv", inputs, [helper.make_tensor_value_info("Y", elem, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", {opset!r})])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["Y"], feeds)[0].transpose(0, 2, 3, 1)
'''

_KERAS = '''
def framework_conv2d(x, w, b, bf16):
    """keras.layers.Conv2D as refconv's `keras` adapter builds it (TensorFlow backend unless KERAS_BACKEND says)."""
    {env}os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    fmt = {fmt!r}
    xin = x if fmt == "channels_last" else x.transpose(0, 3, 1, 2)
    stack = [keras.Input(shape=xin.shape[1:], batch_size=xin.shape[0], dtype=DTYPE)]
    if {explicit!r} is not None:  # explicit pads: ZeroPadding2D first, as users do
        stack.append(keras.layers.ZeroPadding2D(padding={explicit!r}, data_format=fmt, dtype=DTYPE))
    conv = keras.layers.Conv2D(filters=w.shape[3], kernel_size=w.shape[:2], strides=STRIDES, padding={pad!r},
                               data_format=fmt, dilation_rate=DILATIONS, groups=GROUPS, use_bias=b is not None,
                               activation=ACTIVATION, dtype=DTYPE)
    model = keras.Sequential([*stack, conv])
    conv.set_weights([w] if b is None else [w, b])
    y = keras.ops.convert_to_numpy(model(keras.ops.convert_to_tensor(xin, dtype=DTYPE), training=False))
    return y if fmt == "channels_last" else y.transpose(0, 2, 3, 1)
'''

_MAIN = '''

def main():
    sys.stdout.reconfigure(errors="backslashreplace")  # an engine's message may hold bytes the terminal cannot show
    x, w, b, bf16 = load_inputs()
    expected = reference(x, w, b)
    if ACTIVATION == "relu":
        expected = np.maximum(expected, 0)
    bound = reference(np.abs(x), np.abs(w), None if b is None else np.abs(b))
    print(f"{LABEL} on {CASE}")
    say_seen()
    try:
        answer = framework_conv2d(x, w, b, bf16)  # an array, or (values, dtype name) where NumPy lacks the dtype
        actual, got_dtype = answer if isinstance(answer, tuple) else (answer, np.asarray(answer).dtype.name)
        actual = np.asarray(actual, dtype=np.float64)
    except ImportError as exc:  # a missing framework is no reproduction: exit 2, not 1
        print(f"CANNOT RUN: {type(exc).__name__}: {exc}")
        return 2
    except Exception as exc:
        print(f"REPRODUCED: {LABEL} raised {type(exc).__name__}: {exc}")
        print(f"expected an output of shape {expected.shape}")
        return 1
    if actual.shape != expected.shape:
        print(f"REPRODUCED: {LABEL} returned shape {actual.shape}, expected {expected.shape}")
        return 1
    err, ratio = errors(actual, expected, bound)
    beyond = int(np.count_nonzero(ratio > C))
    max_err = float(err.max()) if err.size else 0.0
    max_ratio = float(ratio.max()) if ratio.size else 0.0
    print(f"shape {actual.shape}; max abs diff {max_err:.3e}; bound ratio {max_ratio:.3e} (tolerance C={C:g})")
    if beyond:
        worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        print(f"REPRODUCED: {beyond} / {err.size} elements beyond tolerance; worst at {tuple(map(int, worst))}: "
              f"expected {float(expected[worst])!r}, got {float(actual[worst])!r}")
        for flat in np.argsort(-ratio, axis=None, kind="stable")[1:min(beyond, 4)]:  # a few more, worst first
            at = np.unravel_index(int(flat), ratio.shape)
            print(f"  also at {tuple(map(int, at))}: expected {float(expected[at])!r}, got {float(actual[at])!r}")
        return 1
    if got_dtype != DTYPE:  # right values in the wrong dtype: refconv's outcome wrong_dtype
        print(f"REPRODUCED: {LABEL} returned {got_dtype}, expected {DTYPE} (the values are within tolerance)")
        return 1
    elsewhere = not_this_cpu()  # agreeing on other kernels than the finding's is no fix: exit 3
    if elsewhere is not None:
        return elsewhere
    print("NOT REPRODUCED: the output agrees with the reference within tolerance, in the case's dtype")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _module_paths(label: str) -> list[str]:
    """Folders to put on sys.path so the script imports refconv, adapters and a module:Class adapter."""
    paths = [str(Path(__file__).resolve().parent.parent)]
    name = label.split(":")[0] if ":" in label and "=" not in label.split(":")[1] else ""
    if name:
        found = importlib.util.find_spec(name.split(".")[0])
        if found is not None and found.origin:
            origin = Path(found.origin).resolve()
            top = origin.parent.parent if origin.name == "__init__.py" else origin.parent
            if str(top) not in paths:
                paths.append(str(top))
    return paths


def _options(label: str) -> tuple[str, dict[str, str]]:
    """(engine name, options) of an adapter label: 'tf:onednn=on:isa=avx2' -> ('tf', {onednn: on, isa: avx2})."""
    name, _, options_text = label.partition(":")
    return name, dict(item.partition("=")[::2] for item in options_text.split(":") if "=" in item)


def _env_lines(options: dict[str, str], torch: bool = False) -> str:
    """The environment a variant sets before the framework's import: TF_ENABLE_ONEDNN_OPTS, ONEDNN_MAX_CPU_ISA."""
    env = {}
    if "onednn" in options:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1" if options["onednn"] == "on" else "0"
    if "isa" in options:
        level = level_name(options["isa"])
        env["ONEDNN_MAX_CPU_ISA"] = level.upper()
        if torch and level in hardware.ATEN_FOR_LEVEL:
            env["ATEN_CPU_CAPABILITY"] = hardware.ATEN_FOR_LEVEL[level]
    return "".join(f"os.environ[{k!r}] = {v!r}\n    " for k, v in env.items())


def _framework_part(spec: ConvSpec, label: str) -> tuple[str, str]:
    """(code of framework_conv2d and kernels_here, what the script needs installed)."""
    name, options = _options(label)
    if name == "tf" and set(options) <= {"onednn", "isa"}:
        fmt = "NCHW" if spec.layout == "NCHW" else "NHWC"
        (sh, sw), (dh, dw) = spec.strides, spec.dilations
        return _TF.format(
            env=_env_lines(options), fmt=fmt, pad=padding.for_tf(spec, fmt),
            strides=[1, 1, sh, sw] if fmt == "NCHW" else [1, sh, sw, 1],
            dilations=[1, 1, dh, dw] if fmt == "NCHW" else [1, dh, dw, 1],
        ) + KERNELS_TF, "tensorflow"
    if name == "torch" and set(options) <= {"threads", "mkldnn", "isa"}:
        pre, pad = padding.for_torch(spec)
        threads = f"torch.set_num_threads({int(options['threads'])})\n    " if "threads" in options else ""
        off = options.get("mkldnn") == "off"
        return _TORCH.format(
            env=_env_lines(options, torch=True), threads=threads,
            mkldnn="torch.backends.mkldnn.enabled = False\n" if off else "",
            channels_last=spec.layout == "channels_last", pre=pre, pad=pad,
            strides=spec.strides, dilations=spec.dilations, groups=spec.groups,
        ) + f"\n\nMKLDNN = {not off!r}  # the variant leaves oneDNN on" + KERNELS_TORCH, "torch"
    if name == "onnxruntime" and not options and spec.dtype != "bfloat16" and spec.layout != "channels_last":
        return _ORT.format(pads=padding.for_onnx(spec), opset=22) + KERNELS_CPU, "onnx and onnxruntime"
    if name == "keras" and set(options) <= {"onednn", "isa"} and spec.dtype != "bfloat16" \
            and spec.layout != "channels_last":
        explicit = None if isinstance(spec.padding, str) else spec.padding
        fmt = "channels_first" if spec.layout == "NCHW" else "channels_last"
        pad = spec.padding.lower() if isinstance(spec.padding, str) else "valid"
        return _KERAS.format(env=_env_lines(options), fmt=fmt, explicit=explicit, pad=pad) + KERNELS_TF, "keras"
    return (_GENERIC.format(label=label, paths=_module_paths(label)) + KERNELS_ADAPTER,
            f"refconv and the {label!r} adapter's framework")


def direct(spec: ConvSpec, label: str) -> bool:
    """Does the script call the framework itself (a template), not refconv's adapter?"""
    return "import adapters" not in _framework_part(spec, label)[0]



def script(spec: ConvSpec, label: str, message: str, load: str | None = None, name: str | None = None,
           where: Seen | None = None) -> str:
    """The text of a standalone repro script for one (case, adapter) finding.

    `load`: code defining `load_inputs()` to use instead of reading the npz beside the script (refconv.upstream
    inlines the inputs this way); `name`: the file name the docstring tells to run; `where`: where the finding was
    seen (refconv.repro.seen), checked by the script before it calls a non-reproduction a fix.
    """
    framework, needs = _framework_part(spec, label)
    header = _HEADER.format(
        needs=docstring_safe(needs), name=docstring_safe(name or script_path(Path("."), spec.id, label).name),
        message=docstring_safe(message),
        case_id=spec.id, words=spec.describe(), label=label, strides=spec.strides, dilations=spec.dilations,
        groups=spec.groups, padding=spec.padding, activation=spec.activation, dtype=spec.dtype,
        eps=eps(spec.dtype), tiny=tiny(spec.dtype), c=tolerance_c(spec), overflow=repr(overflow_threshold(spec.dtype)),
        load=LOAD_NPZ.format(npz=f"{spec.id}.npz") if load is None else load,
        seen=docstring_safe("\n".join(["", *(where.lines() if where else [])])), seen_block=seen_block(where),
    )
    return header + framework + _MAIN
