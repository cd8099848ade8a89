"""Case sources: the edge corpus is complete, the random sweep is seeded and covers every dimension."""

from collections import Counter

import numpy as np
import pytest

from refconv import SpecError
from refconv.cases import DEFAULT_SELECTION, edge_cases, random_cases, select
from refconv.inputs import make_inputs
from refconv.padding import geometry


def test_edge_corpus_pins_down_what_issue_2_and_3_list():
    by_name = {s.name: s for s in edge_cases()}
    g = {name: geometry(s) for name, s in by_name.items()}
    assert by_name["one_by_one_kernel_same"].kh == 1
    assert g["kernel_equals_stride_zero_padding"][0][1:] == (0, 0)
    assert g["same_odd_total_extra_after"][0][1:] == (0, 1)
    assert g["same_even_total"][0][1:] == (1, 1)
    assert g["input_smaller_by_one_valid_empty"][0].out == 0
    assert g["dilated_kernel_larger_than_input_valid_empty"][0].out == 0
    assert by_name["depthwise_multiplier_2"].c_out == 2 * by_name["depthwise_multiplier_2"].groups
    kinds = Counter(s.padding_kind for s in by_name.values())
    assert kinds["SAME"] and kinds["VALID"] and kinds["EXPLICIT"]
    assert {s.dtype for s in by_name.values()} == {"float16", "bfloat16", "float32", "float64"}
    assert {s.layout for s in by_name.values()} == {"NHWC", "NCHW", "channels_last"}
    assert any(s.c_in >= 64 for s in by_name.values()) and any(s.n > 1 for s in by_name.values())


def test_random_sweep_is_reproducible():
    assert [s.id for s in random_cases(50, seed=3)] == [s.id for s in random_cases(50, seed=3)]
    assert [s.id for s in random_cases(50, seed=3)] != [s.id for s in random_cases(50, seed=4)]


def test_default_run_mix_covers_every_dimension():
    specs = random_cases(200, seed=0)
    assert {s.dtype for s in specs} == {"float16", "bfloat16", "float32", "float64"}
    assert {s.layout for s in specs} == {"NHWC", "NCHW", "channels_last"}
    assert {s.padding_kind for s in specs} == {"SAME", "VALID", "EXPLICIT"}
    assert any(s.dilations[0] > 1 and s.padding == "SAME" for s in specs)
    assert any(s.groups == s.c_in > 1 for s in specs) and any(1 < s.groups < s.c_in for s in specs)
    assert any(s.activation == "relu" for s in specs) and any(not s.bias for s in specs)


def test_inputs_are_bit_identical_and_in_the_case_dtype():
    spec = random_cases(5, seed=1)[2]
    a, b = make_inputs(spec), make_inputs(spec)
    for u, v in zip(a, b, strict=True):
        if u is not None:
            assert u.dtype.name == spec.dtype and u.tobytes() == v.tobytes()


def test_selection_strings():
    assert len(select("random:7")) == 7
    ids = [s.id for s in select(DEFAULT_SELECTION)]
    assert len(ids) == len(set(ids))
    one = edge_cases()[0]
    assert select(one.id) == [one]
    assert np.all([s.seed >= 0 for s in select("edge,random:20")])


@pytest.mark.parametrize(("selection", "message"), [
    ("bogus", "unknown case source 'bogus'; available: "),
    ("random:0", "case count must be a positive integer, got 'random:0'"),
    ("random:x", "case count must be a positive integer"),
    (" , ", "case selection is empty"),
    ("n1-2x2", "malformed case id 'n1-2x2'"),
])
def test_bad_selections_raise_one_clear_error(selection, message):
    with pytest.raises(SpecError, match=message):
        select(selection)


def test_with_dtype_sets_every_case_and_rejects_unknown_dtypes():
    from refconv.cases import with_dtype

    specs = with_dtype(random_cases(30, seed=2), "float32")
    assert {s.dtype for s in specs} == {"float32"} and len(specs) == len({s.id for s in specs})
    with pytest.raises(SpecError, match="dtype must be one of"):
        with_dtype(specs, "int8")
