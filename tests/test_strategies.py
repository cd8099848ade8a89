"""The public hypothesis strategies: validated bounds, caps respected, labelled draws that shrink small."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from refconv import strategies
from refconv.errors import SpecError
from refconv.padding import output_hw
from refconv.spec import ConvSpec

QUIET = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_side": 0}, "max_side must be an integer >= 1, got 0"),
    ({"max_kernel": -2}, "max_kernel must be an integer >= 1"),
    ({"max_pad": -1}, "max_pad must be an integer >= 0"),
    ({"max_batch": 1.5}, "max_batch must be an integer"),
    ({"dtypes": ["float8"]}, "dtypes must be a non-empty selection"),
    ({"paddings": []}, "paddings must be a non-empty selection"),
    ({"layouts": ["HWCN"]}, "layouts must be a non-empty selection"),
])
def test_bad_bounds_raise_naming_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        strategies.specs(**kwargs)


@given(strategies.specs(max_side=5, max_kernel=3, max_stride=2, max_dilation=2, max_channels=4, max_pad=2,
                        dtypes=["float16", "bfloat16"], layouts=["NCHW"], paddings=["EXPLICIT"]))
def test_caps_and_choices_are_respected(spec: ConvSpec) -> None:
    assert spec.h <= 5 and spec.w <= 5 and spec.kh <= 3 and spec.kw <= 3
    assert max(spec.strides) <= 2 and max(spec.dilations) <= 2
    assert spec.c_in <= 4 and spec.c_out <= 4 and spec.c_in % spec.groups == 0 == spec.c_out % spec.groups
    assert spec.dtype in ("float16", "bfloat16") and spec.layout == "NCHW"
    assert not isinstance(spec.padding, str) and max(max(p) for p in spec.padding) <= 2


@given(strategies.specs(allow_empty=False))
def test_allow_empty_false_gives_nonempty_outputs(spec: ConvSpec) -> None:
    assert 0 not in output_hw(spec)


def test_shrinks_to_a_minimal_case() -> None:
    """Asking for an empty output shrinks to a 1-pixel input under VALID with the smallest kernel that empties it."""
    spec = find(strategies.specs(), lambda s: 0 in output_hw(s), settings=QUIET)
    assert (spec.n, spec.h, spec.w, spec.c_in, spec.c_out, spec.groups) == (1, 1, 1, 1, 1, 1)
    assert spec.padding == "VALID" and spec.strides == (1, 1) and spec.dilations == (1, 1)
    assert (spec.kh, spec.kw) == (1, 2)


@given(st.data())
def test_inputs_have_the_spec_shapes_and_dtype(data: st.DataObject) -> None:
    spec = data.draw(strategies.specs(max_side=4, max_channels=4, dtypes=["float32", "float64", "float16", "bfloat16"]))
    x, w, b = data.draw(strategies.inputs(spec))
    assert x.shape == spec.input_shape and w.shape == spec.kernel_shape
    assert (b is None) == (not spec.bias) and (b is None or b.shape == (spec.c_out,))
    assert x.dtype.name == w.dtype.name == spec.dtype
    assert np.all(np.abs(x.astype(np.float64)) <= strategies.MAX_ABS_VALUE)


def test_inputs_shrink_to_zeros() -> None:
    spec = ConvSpec(n=1, h=2, w=2, c_in=1, c_out=1, kh=1, kw=1)
    x, w, b = find(strategies.inputs(spec), lambda xwb: True, settings=QUIET)
    assert not x.any() and not w.any() and b is not None and not b.any()


def test_inputs_needs_a_spec() -> None:
    with pytest.raises(SpecError, match="needs a ConvSpec"):
        strategies.inputs("n1-1x1x1-k1x1x1-s1x1-same-f32")  # type: ignore[arg-type]
