"""A deliberately wrong third-party adapter for the plugin's end-to-end test: SAME puts the odd pixel first.

That is a classic porting bug (Caffe/PyTorch-style symmetric thinking); it is right whenever the
padding total is even and wrong on every odd total, which the edge corpus and the grid must catch.
"""

from __future__ import annotations

import numpy as np

from refconv.padding import explicit_pads
from refconv.reference import conv2d
from refconv.spec import ConvSpec


class OddPadBeforeConv:
    """NHWC/HWIO in, NHWC out, with TF's SAME padding mirrored (extra pixel before, not after)."""

    name = "odd-pad-before"

    def version(self) -> str:
        return "0"

    def supports(self, spec: ConvSpec) -> str | None:
        return None if spec.layout == "NHWC" else "NHWC only"

    def conv2d(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
        pads = explicit_pads(spec)
        if spec.padding == "SAME":
            pads = ((pads[0][1], pads[0][0]), (pads[1][1], pads[1][0]))
        out = conv2d(x, w, b, spec.strides, pads, spec.dilations, spec.groups, spec.activation)
        return out.astype(x.dtype)
