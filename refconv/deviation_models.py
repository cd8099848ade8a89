"""Models of known wrong answers: what a framework computes where it deviates, from the case's inputs alone.

A known deviation with a `model` witness (refconv/data/known_deviations.toml) explains a failing row only
when the framework's output matches its model within the usual tolerance (`refconv.compare`), so the
entry predicts the wrong values themselves, not just where they occur. A model returns `(wrong, bound)`:
the wrong answer in float64, NHWC, and the magnitude its rounding error scales with (as `for_spec` does
for the right answer). NumPy only; each model is written from the framework's code and checked against
its measured outputs (tests/test_deviations.py).

>>> from refconv.inputs import make_inputs
>>> spec = ConvSpec(n=1, h=4, w=4, c_in=1, c_out=4, kh=1, kw=1, layout="NCHW")
>>> x, w, b = make_inputs(spec)
>>> wrong, _ = MODELS["keras_bias_on_width"](spec, x, w, b)
>>> right, _ = for_spec(spec, x, w, b)
>>> bool(np.allclose(wrong - right, b[None, None, :, None] - b[None, None, None, :]))
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from refconv.padding import geometry
from refconv.reference import for_spec
from refconv.spec import ConvSpec

Model = Callable[[ConvSpec, np.ndarray, np.ndarray, "np.ndarray | None"], tuple[np.ndarray, np.ndarray]]


def keras_bias_on_width(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The conv with its bias added along the output width: out[n, h, j, c] = conv[n, h, j, c] + b[j].

    Keras's channels_first x + reshape(b, (1, C, 1, 1)) becomes tf.nn.bias_add(x, b), which adds along the
    last axis of the NCHW tensor, the width; the activation follows the bias.
    """
    conv, bound = for_spec(spec.replace(bias=False, activation=None), x, w, None)
    if b is None or conv.shape[2] != np.shape(b)[0]:  # no bias, or no width to add it along: nothing to model
        return for_spec(spec, x, w, b)
    b64 = np.asarray(b, dtype=np.float64)
    wrong = conv + b64[None, None, :, None]
    if spec.activation == "relu":
        wrong = np.maximum(wrong, 0.0)
    return wrong, bound + np.abs(b64)[None, None, :, None]


def _ort_same_pads(size: int, k_eff: int, stride: int) -> tuple[int, int]:
    """SAME_UPPER's (head, tail) as ONNX Runtime applies them: the total is not clamped at 0.

    ORT's ComputePad (onnxruntime/core/providers/common.h) keeps a negative total t; its output-size check
    truncates (in + 2t - k) / s + 1 below ceil(in / s) and adds 1 to t, then head = (t + 1) / 2 in C++
    (truncated toward 0): head -1 for t = -3 or -4, -2 for t = -5 or -6; t >= 0 splits as SAME_UPPER.
    Measured (one axis, k 1-3, stride 1-6, input 1-11, float32), and on 4,000 SAME cases up to 64x64.
    """
    out = -(-size // stride)
    total = (out - 1) * stride + k_eff - size
    head = total // 2 if total >= 0 else -((-total - 1) // 2)
    return head, total - head


def _crop(x: np.ndarray, axis: int, head: int, tail: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A negative pad removes input pixels: crop them and keep the non-negative part as padding."""
    start, stop = max(-head, 0), x.shape[axis] - max(-tail, 0)
    return np.take(x, np.arange(start, stop), axis=axis), (max(head, 0), max(tail, 0))


def onnxruntime_same_unclamped_pads(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None
                                    ) -> tuple[np.ndarray, np.ndarray]:
    """The conv with the SAME_UPPER pads ONNX Runtime uses, negative ones (a shifted window start) included."""
    rows, cols = geometry(spec)
    pads = []
    for axis, (size, k, d, s) in enumerate(((spec.h, spec.kh, spec.dilations[0], spec.strides[0]),
                                            (spec.w, spec.kw, spec.dilations[1], spec.strides[1])), start=1):
        x, pad = _crop(x, axis, *_ort_same_pads(size, (k - 1) * d + 1, s))
        pads.append(pad)
    cropped = spec.replace(h=x.shape[1], w=x.shape[2], padding=tuple(pads))
    wrong, bound = for_spec(cropped, x, w, b)
    assert wrong.shape[1:3] == (rows.out, cols.out), "the model keeps SAME's output size"
    return wrong, bound


def onnx_ref_dilation_zero_insertion(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None
                                     ) -> tuple[np.ndarray, np.ndarray]:
    """The conv with the kernel dilated by inserting zeros, as onnx.reference's Conv builds it.

    Its `new_w[..., ::dh, ::dw] = W` turns a dilated kernel into an undilated one of span (k - 1) * d + 1
    with zero taps in the holes, so an Inf or NaN under a hole adds 0 * Inf = NaN (or 0 * NaN) to an output
    the dilated convolution never reads it for. The same padding: SAME's pads depend on the span alone.
    """
    (dh, dw), (kh, kw) = spec.dilations, (w.shape[0], w.shape[1])
    inserted = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1, *w.shape[2:]), dtype=np.float64)
    inserted[::dh, ::dw] = np.asarray(w, dtype=np.float64)
    rows, cols = geometry(spec)
    undilated = spec.replace(kh=inserted.shape[0], kw=inserted.shape[1], dilations=(1, 1),
                             padding=((rows.before, rows.after), (cols.before, cols.after)))
    return for_spec(undilated, x, inserted, b)


def _smallest_normal(dtype: str) -> float:
    """The smallest normal number of the type a dtype is computed in (bfloat16 and float16 accumulate in float32)."""
    return float(np.finfo(np.float64 if dtype == "float64" else np.float32).tiny)


def flush_subnormals(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The conv computed with denormals-are-zero and flush-to-zero: subnormal inputs read as 0, subnormal results 0.

    What a CPU with the MXCSR's DAZ and FTZ bits set computes, in the type the case is computed in: TensorFlow sets
    them around its kernels and XLA's CPU code runs with denormal-fp-math=preserve-sign. float16 inputs are normal
    float32 numbers, so the model changes nothing there.
    """
    tiny = _smallest_normal(spec.dtype)

    def daz(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        return np.where(np.abs(a) < tiny, 0.0, a)

    conv, bound = for_spec(spec, daz(x), daz(w), None if b is None else daz(b))
    return np.where(np.abs(conv) < tiny, 0.0, conv), bound


MODELS: dict[str, Model] = {
    "flush_subnormals": flush_subnormals,
    "keras_bias_on_width": keras_bias_on_width,
    "onnxruntime_same_unclamped_pads": onnxruntime_same_unclamped_pads,
    "onnx_ref_dilation_zero_insertion": onnx_ref_dilation_zero_insertion,
}


def predict(name: str, spec: ConvSpec, values: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(wrong, bound) of the named model on a case's inputs (x, w, b)."""
    return MODELS[name](spec, *values)
