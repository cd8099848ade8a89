"""A third-party-style adapter with a planted bug, for `refconv hunt`'s end-to-end test.

`Planted` is right (the numpy path) except on one 4-way conjunction of case facts, where it adds the bias
a second time to every image after the first. The hunter is not told the conjunction: the test only
checks that `refconv hunt` recovers it (tests/test_hunt.py). Named `planted_adapters:Planted`.
"""

from __future__ import annotations

import numpy as np

from adapters.base import Prepared
from adapters.numpy_ref import NumpyAdapter
from refconv.spec import ConvSpec


class Planted(NumpyAdapter):
    """The numpy adapter with one planted wrong-values bug."""

    name = "planted"

    def version(self) -> str:
        return "0-planted"

    @staticmethod
    def buggy(spec: ConvSpec) -> bool:
        """The planted conjunction: batch >= 2, one input channel, column stride > row stride, a bias."""
        return spec.n >= 2 and spec.c_in == 1 and spec.strides[1] > spec.strides[0] and spec.bias

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        prepared = super().prepare(x, w, b, spec)
        if not self.buggy(spec) or b is None:
            return prepared

        def fetch(out: np.ndarray) -> np.ndarray:
            out = np.array(prepared.fetch(out))
            out[1:] += b.astype(out.dtype)  # the planted bug: the bias again on images 2..n
            return out

        return Prepared(prepared.call, fetch)
