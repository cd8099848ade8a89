"""Floating-point facts of the spec dtypes (machine epsilon, finfo), shared by the tolerance modules.

>>> eps("float32") == 2.0 ** -23
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOW_PRECISION = ("float16", "bfloat16")


def finfo(dtype: str) -> Any:
    """np.finfo of a spec dtype; bfloat16 comes from ml_dtypes."""
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.finfo(ml_dtypes.bfloat16)
    return np.finfo(np.dtype(dtype))


def eps(dtype: str) -> float:
    """Machine epsilon of a spec dtype."""
    return float(finfo(dtype).eps)
