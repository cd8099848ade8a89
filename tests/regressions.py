"""Minimal failures that hypothesis shrank to, pinned as explicit examples of the hypothesis tests.

Each is the smallest case of a known deviation (refconv/data/known_deviations.toml); keeping them as
@example means every run replays them first, whatever the profile draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import example

from refconv.spec import ConvSpec

# (case id, adapter, known deviation it shows): what hypothesis shrank to on tensorflow-cpu 2.21.0, torch 2.13.0+cpu
MINIMAL_FAILURES = (
    # tf (oneDNN on): output (1, 1, 1, 1) where the right answer is (1, 1, 0, 1)
    ("n1-1x1x1-k1x2x1-s1x1-valid-f32-nobias", "tf", "tf_onednn_empty_output_wrong_shape"),
    # tf:onednn=off: 'Computed output size would be negative' (dilated kernel 3 on a 1-pixel input)
    ("n1-1x1x1-k2x1x1-s1x1-valid-f32-d2x1-nobias", "tf:onednn=off", "tf_valid_empty_output_raises"),
    # torch: 'Kernel size can't be greater than actual input size' for the empty output (1, 1, 0, 1)
    ("n1-1x1x1-k1x2x1-s1x1-valid-f32-nobias", "torch", "torch_empty_output_raises"),
)
REGRESSION_SPECS = tuple(dict.fromkeys(ConvSpec.from_id(case_id) for case_id, _, _ in MINIMAL_FAILURES))


def pinned(test: Callable[..., Any]) -> Callable[..., Any]:
    """Add every minimal failure as an @example(spec=...) of a hypothesis test taking `spec`."""
    for spec in REGRESSION_SPECS:
        test = example(spec=spec)(test)
    return test
