"""The tutorial's single-image API, on refconv's reference, with its padding crash fixed.

The tutorial convolves one image (HWC) with an HWIO kernel and one bias per output channel. Its
zero-padding step wrote the input into ``padded[top:-bottom, left:-right]``, which is an empty slice
when the bottom or right padding is 0 (``top:-0``): a 1x1 kernel, or kernel == stride under SAME,
crashed. Here the padding comes from `refconv.padding` (written once) and the slice is
``padded[top:top + h, left:left + w]``, which is right for every padding, zero included.

>>> import numpy as np
>>> x = np.arange(16.0).reshape(4, 4, 1)          # one 4x4 single-channel image
>>> k = np.ones((2, 2, 1, 1))                      # 2x2 kernel == stride 2: no padding at all
>>> convolution2d(x, k, np.zeros(1), strides=(2, 2), padding="same")[:, :, 0]
array([[10., 18.],
       [42., 50.]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refconv.errors import SpecError
from refconv.padding import axis
from refconv.reference import conv2d
from refconv.spec import _pair, normalize_padding


def _check_image(conv_input: Any, conv_kernel: Any) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.asarray(conv_input), np.asarray(conv_kernel)
    if x.ndim != 3:
        raise SpecError(f"conv_input must be one HWC image (rank 3), got shape {x.shape}")
    if w.ndim != 4:
        raise SpecError(f"conv_kernel must be HWIO (rank 4), got shape {w.shape}")
    return x, w


def zero_pad(conv_input: Any, kernel_hw: tuple[int, int], strides: Any = (1, 1), padding: str = "same") -> np.ndarray:
    """The tutorial's zero-padding step, fixed: pads an HWC image as SAME/VALID asks (from refconv.padding).

    >>> zero_pad(np.ones((4, 4, 1)), (2, 2), strides=(2, 2)).shape   # total padding 0: nothing added
    (4, 4, 1)
    >>> zero_pad(np.ones((6, 6, 1)), (3, 3), strides=(2, 2))[:, :, 0].sum(axis=1)   # bottom row of zeros
    array([6., 6., 6., 6., 6., 6., 0.])
    """
    x = np.asarray(conv_input)
    if x.ndim != 3:
        raise SpecError(f"conv_input must be one HWC image (rank 3), got shape {x.shape}")
    sh, sw = _pair("strides", strides)
    pad = normalize_padding(padding)
    if not isinstance(pad, str):
        raise SpecError(f"padding must be 'same' or 'valid', got {padding!r}")
    h, w = x.shape[:2]
    rows, cols = axis(pad, h, kernel_hw[0], sh), axis(pad, w, kernel_hw[1], sw)
    padded = np.zeros((h + rows.before + rows.after, w + cols.before + cols.after, x.shape[2]), dtype=x.dtype)
    # The tutorial wrote padded[top:-bottom, left:-right]: empty when bottom or right is 0.
    padded[rows.before: rows.before + h, cols.before: cols.before + w] = x
    return padded


def convolution2d(
    conv_input: Any, conv_kernel: Any, bias: Any, strides: Any = (1, 1), padding: str = "same"
) -> np.ndarray:
    """One HWC image through an HWIO kernel plus one bias per output channel; returns HWC float64.

    >>> convolution2d(np.ones((3, 3, 2)), np.ones((3, 3, 2, 1)), np.array([1.0]), padding="valid")
    array([[[19.]]])
    """
    x, w = _check_image(conv_input, conv_kernel)
    pad = normalize_padding(padding)
    if not isinstance(pad, str):
        raise SpecError(f"padding must be 'same' or 'valid', got {padding!r}")
    b = None if bias is None else np.asarray(bias)
    return conv2d(x[np.newaxis], w, b, strides=strides, padding=pad)[0]


def relu(y: Any) -> np.ndarray:
    """max(y, 0) elementwise: the activation the tutorial applies after the bias.

    >>> relu(np.array([-1.5, 0.0, 2.0]))
    array([0., 0., 2.])
    """
    return np.maximum(np.asarray(y, dtype=np.float64), 0.0)
