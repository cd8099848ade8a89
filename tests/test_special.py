"""Special values as cases: the ids round-trip, the reference follows IEEE 754, compare judges NaN/Inf positions."""

from __future__ import annotations

import numpy as np
import pytest

from refconv import cases, special
from refconv.compare import compare
from refconv.inputs import make_inputs, np_dtype
from refconv.padding import geometry
from refconv.reference import for_spec
from refconv.spec import VALUE_KINDS, VALUE_PLACES, ConvSpec, SpecError

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN and Inf are the point here

ALL = special.special_cases(len(special.GEOMETRIES) * len(VALUE_KINDS) * len(VALUE_PLACES))


def _predict(spec: ConvSpec, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(NaN, +Inf, -Inf) masks of the output from the products in each window, padding never multiplied."""
    rows, cols = geometry(spec)
    (sh, sw), (dh, dw) = spec.strides, spec.dilations
    pads = ((0, 0), (rows.before, rows.after), (cols.before, cols.after), (0, 0))
    xp = np.pad(np.asarray(x, np.float64), pads)
    inside = np.pad(np.ones(x.shape, bool), pads)  # False on padding
    w = np.asarray(w, np.float64)
    shape = (spec.n, rows.out, cols.out, spec.c_out)
    nan, pos, neg = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool)
    cg, og = spec.c_in // spec.groups, spec.c_out // spec.groups
    for i in range(spec.kh):
        for j in range(spec.kw):
            window = (slice(None), slice(i * dh, i * dh + (rows.out - 1) * sh + 1, sh),
                      slice(j * dw, j * dw + (cols.out - 1) * sw + 1, sw))
            patch, real = xp[window], inside[window]
            for o in range(spec.c_out):
                ch = slice((o // og) * cg, (o // og + 1) * cg)
                with np.errstate(invalid="ignore"):
                    prod = patch[..., ch] * w[i, j, :, o]
                prod = np.where(real[..., ch], prod, 0.0)  # padding contributes an exact zero
                nan[..., o] |= np.isnan(prod).any(-1)
                pos[..., o] |= np.isposinf(prod).any(-1)
                neg[..., o] |= np.isneginf(prod).any(-1)
    return nan | (pos & neg), pos & ~neg & ~nan, neg & ~pos & ~nan


def test_every_kind_and_place_is_in_the_first_24_cases_and_ids_round_trip():
    first = special.special_cases(24)
    assert {s.values.split("_")[0] for s in first[:8]} == set(VALUE_KINDS)
    assert len({s.values for s in first}) >= 23  # huge never pairs with ring
    for spec in ALL:
        assert ConvSpec.from_id(spec.id) == spec and spec.id.endswith(f"-v{spec.values}")
    assert ConvSpec(n=1, h=3, w=3, c_in=1, c_out=1, kh=1, kw=1).id == "n1-3x3x1-k1x1x1-s1x1-same-f32"


def test_special_is_in_the_default_selection_with_a_small_budget():
    assert "special:24" in cases.DEFAULT_SELECTION.split(",")
    assert [s.id for s in cases.select("special:5")] == [s.id for s in ALL[:5]]


def test_a_bad_values_field_is_a_spec_error():
    with pytest.raises(SpecError, match="values must be"):
        ConvSpec(n=1, h=3, w=3, c_in=1, c_out=1, kh=1, kw=1, values="nan_everywhere")
    with pytest.raises(SpecError, match="malformed case id"):
        ConvSpec.from_id("n1-3x3x1-k1x1x1-s1x1-same-f32-vnan")


@pytest.mark.parametrize("place", VALUE_PLACES)
def test_places_put_values_where_they_say(place):
    spec = ConvSpec(n=1, h=6, w=6, c_in=2, c_out=1, kh=3, kw=3, values=f"nan_{place}")
    x, _, _ = make_inputs(spec)
    where = {tuple(map(int, p)) for p in np.argwhere(np.isnan(x[0, :, :, 0]))}
    assert where == set(special.pixels(6, 6, place)) and not np.isnan(x[..., 1]).any()
    if place == "ring":
        assert all(i in (0, 5) or j in (0, 5) for i, j in where) and len(where) == 20


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.id)
def test_reference_follows_ieee_in_every_special_case(spec):
    x, w, b = make_inputs(spec)
    expected, bound = for_spec(spec, x, w, b)
    nan, pos, neg = _predict(spec, x, w)
    if b is not None:  # a NaN bias would make its channel NaN; the special source keeps the bias finite
        assert np.isfinite(np.asarray(b, np.float64)).all()
    assert np.array_equal(np.isnan(expected), nan)
    assert np.array_equal(np.isposinf(expected), pos | (np.isposinf(expected) & (spec.values.startswith("huge"))))
    assert np.array_equal(np.isneginf(expected), neg | (np.isneginf(expected) & (spec.values.startswith("huge"))))
    # an engine that rounds the exact answer once to the dtype passes
    rounded = expected.astype(np_dtype(spec.dtype))
    assert compare(spec, expected, bound, rounded).outcome == "pass"


def test_special_cases_actually_hold_nan_and_inf_outputs():
    counts = {"nan": 0, "inf": 0}
    for spec in ALL:
        expected, _ = for_spec(spec, *make_inputs(spec))
        counts["nan"] += int(np.isnan(expected).sum())
        counts["inf"] += int(np.isinf(expected).sum())
    assert counts["nan"] > 100 and counts["inf"] > 100


def _case(values: str, dtype: str = "float32") -> tuple[ConvSpec, np.ndarray, np.ndarray, np.ndarray]:
    spec = ConvSpec(n=1, h=8, w=8, c_in=4, c_out=4, kh=3, kw=3, dtype=dtype, values=values)
    x, w, b = make_inputs(spec)
    expected, bound = for_spec(spec, x, w, b)
    return spec, expected, bound, expected.astype(np_dtype(dtype))


def test_a_nan_spread_to_a_neighbouring_output_is_a_mismatch():
    spec, expected, bound, got = _case("nan_mid")
    nan = np.isnan(expected)
    assert nan.any() and not nan.all()
    spread = got.copy()
    spread[0, 1, 1, :] = np.nan  # (1, 1) is outside the 3x3 reach of the centre pixel (4, 4)
    assert not nan[0, 1, 1].any()
    c = compare(spec, expected, bound, spread)
    assert c.outcome == "mismatch" and c.mismatched == 4


def test_a_lost_inf_is_a_mismatch():
    spec, expected, bound, got = _case("inf_corner")
    lost = got.copy()
    lost[np.isinf(lost)] = np.finfo(np.float32).max
    assert compare(spec, expected, bound, lost).outcome == "mismatch"
    flipped = got.copy()
    flipped[np.isinf(flipped)] *= -1
    assert compare(spec, expected, bound, flipped).outcome == "mismatch"


def test_nan_instead_of_inf_is_a_mismatch():
    spec, expected, bound, got = _case("ninf_ring")
    wrong = got.copy()
    wrong[np.isinf(wrong)] = np.nan
    assert compare(spec, expected, bound, wrong).outcome == "mismatch"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_flushing_subnormal_inputs_to_zero_is_a_mismatch(dtype):
    spec = ConvSpec(n=1, h=8, w=8, c_in=1, c_out=2, kh=3, kw=3, dtype=dtype, bias=False, values="subnormal_ring")
    x, w, b = make_inputs(spec)
    expected, bound = for_spec(spec, x, w, b)
    flushed, _ = for_spec(spec, np.zeros_like(x), w, b)  # DAZ: every subnormal input read as zero
    assert compare(spec, expected, bound, flushed.astype(np_dtype(dtype))).outcome == "mismatch"


def test_overflow_past_the_dtype_range_expects_inf():
    spec, expected, bound, got = _case("huge_mid", "float16")
    assert np.isinf(got).any()  # the rounded reference overflows somewhere
    saturated = got.copy()
    saturated[np.isposinf(saturated)] = np.finfo(np.float16).max
    assert compare(spec, expected, bound, saturated).outcome == "mismatch"


def test_signed_zeros_give_zeros_not_nan():
    spec, expected, bound, got = _case("negzero_ring")
    x, _, _ = make_inputs(spec)
    assert np.signbit(x[0, 0, 0, 0]) and x[0, 0, 0, 0] == 0
    assert np.isfinite(expected).all()
    assert compare(spec, expected, bound, got).outcome == "pass"


def test_metamorphic_relations_skip_special_value_cases():
    from refconv import metamorphic
    from refconv.reference import conv2d

    def ref(x, w, b, s):  # type: ignore[no-untyped-def]
        return conv2d(x, w, b, s.strides, s.padding, s.dilations, s.groups, s.activation)

    results = list(metamorphic.check_all(ref, ConvSpec(n=2, h=5, w=5, c_in=2, c_out=2, kh=3, kw=3, values="inf0_mid")))
    assert all(r.ok and "special values" in r.skipped for r in results)
