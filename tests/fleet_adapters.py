"""A third-party-style adapter whose planted bug needs a hardware condition, for the fleet test.

`Capped` is right (the numpy path) except where two things meet: a case region (one input channel and a
column stride of 2 or more) and oneDNN capped at AVX2 in its process (ONEDNN_MAX_CPU_ISA, read as oneDNN
reads it: once, from the process's environment). There its "AVX2 kernel" leaves a stale 1.0 in the first
output channel. Its `isa(spec)` names the level in force ("onednn:avx2", "onednn:avx512_core_amx", ...),
so the true cause is "c_in = 1, sw >= 2, isa = onednn:avx2". Pure NumPy: no framework is imported.
Named `fleet_adapters:Capped` (tests/test_fleet.py).
"""

from __future__ import annotations

import functools

import numpy as np

from adapters.base import Prepared
from adapters.numpy_ref import NumpyAdapter
from refconv import hardware
from refconv.spec import ConvSpec

BUGGY_LEVEL = "avx2"


@functools.cache
def level() -> str:
    """The oneDNN level this process dispatches to, fixed at first use (oneDNN reads its cap once)."""
    return hardware.onednn_level_in_force()


class Capped(NumpyAdapter):
    """The numpy adapter with a bug only in its AVX2 'kernel', on one region of cases."""

    name = "capped"

    def version(self) -> str:
        return "0-capped"

    def isa(self, spec: ConvSpec | None) -> str:
        return hardware.onednn_isa(level())

    @staticmethod
    def in_region(spec: ConvSpec) -> bool:
        """The cases the AVX2 kernel gets wrong: one input channel, a column stride of 2 or more."""
        return spec.c_in == 1 and spec.strides[1] >= 2

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        prepared = super().prepare(x, w, b, spec)
        if level() != BUGGY_LEVEL or not self.in_region(spec):
            return prepared

        def fetch(out: np.ndarray) -> np.ndarray:
            out = np.array(prepared.fetch(out))
            out[..., 0] += np.asarray(1.0, dtype=out.dtype)  # NHWC: the stale accumulator in channel 0
            return out

        return Prepared(prepared.call, fetch)
