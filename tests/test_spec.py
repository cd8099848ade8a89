"""ConvSpec: construction, validation naming the field, and the id round trip."""

import pytest

from refconv import ConvSpec, SpecError
from refconv.cases import edge_cases, random_cases

BASE = dict(n=1, h=5, w=5, c_in=1, c_out=2, kh=3, kw=3, strides=(1, 1), padding="SAME")


def test_issue_example_keywords_and_defaults():
    s = ConvSpec(**BASE)
    assert (s.n, s.h, s.w, s.c_in, s.c_out, s.kh, s.kw) == (1, 5, 5, 1, 2, 3, 3)
    assert s.strides == (1, 1) and s.padding == "SAME" and s.dtype == "float32" and s.bias is True
    assert s.id == "n1-5x5x1-k3x3x2-s1x1-same-f32"


def test_id_matches_the_documented_example():
    s = ConvSpec(n=2, h=7, w=5, c_in=3, c_out=4, kh=3, kw=2, strides=(2, 1), padding="same")
    assert s.id == "n2-7x5x3-k3x2x4-s2x1-same-f32"


def test_padding_is_case_insensitive_and_stored_upper():
    assert ConvSpec(**{**BASE, "padding": "valid"}).padding == "VALID"


def test_every_field_in_the_id_round_trips():
    s = ConvSpec(n=3, h=9, w=4, c_in=6, c_out=12, kh=2, kw=5, strides=(3, 1), padding=((0, 4), (2, 1)),
                 dilations=(2, 3), groups=3, bias=False, dtype="bfloat16", layout="channels_last",
                 activation="relu", seed=77)
    assert s.id == "n3-9x4x6-k2x5x12-s3x1-p0_4x2_1-bf16-d2x3-g3-cl-relu-nobias-r77"
    assert ConvSpec.from_id(s.id) == s


def test_corpus_and_sweep_ids_round_trip():
    for s in edge_cases() + random_cases(300, seed=5):
        assert ConvSpec.from_id(s.id) == s, s.id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strides": (0, 1)}, "strides must be positive integers, got (0, 1)"),
        ({"dilations": (1, 0)}, "dilations must be positive integers, got (1, 0)"),
        ({"n": 0}, "n must be a positive integer, got 0"),
        ({"kh": -1}, "kh must be a positive integer, got -1"),
        ({"padding": "FULL"}, "padding must be 'SAME', 'VALID' or ((top, bottom), (left, right)), got 'FULL'"),
        ({"padding": ((1, -1), (0, 0))}, "padding must be non-negative integers"),
        ({"c_in": 4, "c_out": 6, "groups": 4}, "groups must divide c_in and c_out, got groups=4 with c_in=4, c_out=6"),
        ({"dtype": "int8"}, "dtype must be one of float16, bfloat16, float32, float64, got 'int8'"),
        ({"layout": "HWCN"}, "layout must be one of NHWC, NCHW, channels_last, got 'HWCN'"),
        ({"activation": "gelu"}, "activation must be None or 'relu', got 'gelu'"),
        ({"seed": -3}, "seed must be a non-negative integer, got -3"),
        ({"bias": "yes"}, "bias must be True or False, got 'yes'"),
    ],
)
def test_bad_field_raises_value_error_naming_it(change, message):
    with pytest.raises(ValueError, match="^" + __import__("re").escape(message)):
        ConvSpec(**{**BASE, **change})


@pytest.mark.parametrize("bad", ["", "n1-5x5", "n1-5x5x1-k3x3x2-s1x1-full-f32", "n1-5x5x1-k3x3x2-s1x1-same-f8",
                                 "n0-5x5x1-k3x3x2-s1x1-same-f32", "n1-5x5x1-k3x3x2-s1x1-same-f32-bogus"])
def test_malformed_ids_raise_spec_error(bad):
    with pytest.raises(SpecError):
        ConvSpec.from_id(bad)


def test_spec_is_frozen_and_hashable():
    s = ConvSpec(**BASE)
    with pytest.raises(AttributeError):
        s.n = 2  # type: ignore[misc]
    assert len({s, ConvSpec(**BASE)}) == 1


def test_derived_facts():
    s = ConvSpec(n=1, h=8, w=8, c_in=8, c_out=4, kh=3, kw=3, groups=2)
    assert s.reduction_length == 3 * 3 * 4
    assert s.kernel_shape == (3, 3, 4, 4)
    assert "groups 2" in s.describe()
