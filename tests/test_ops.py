"""The ops seam for the training ops: ids, inputs, references, adapter dispatch, case expansion, rows and
the transposed-conv geometry (refconv.grad_padding, refconv.grad_cases)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from refconv import grad, ops
from refconv.cases import parse_ops, select, with_ops
from refconv.compare import tolerance_c
from refconv.errors import SpecError
from refconv.grad_cases import tgrid_cases
from refconv.grad_padding import axes, jax_transpose, keras_transpose, onnx_transpose, sizes_for, torch_transpose
from refconv.op_tolerance import reduction_length
from refconv.padding import axis
from refconv.rows import case_columns
from refconv.spec import OPS, ConvSpec

BASE = ConvSpec(n=2, h=7, w=6, c_in=4, c_out=6, kh=3, kw=2, strides=(2, 1), padding=((1, 0), (2, 1)), groups=2, seed=3)


@pytest.mark.parametrize("op", OPS)
def test_ids_round_trip_and_forward_ids_are_unchanged(op):
    spec = BASE.replace(op=op)
    assert ConvSpec.from_id(spec.id) == spec
    assert spec.id == BASE.id if op == "conv2d" else spec.id == BASE.id.replace("-r3", "-nobias-r3").replace(
        "-nobias", "") + f"-{op}"


def test_training_ops_take_no_activation_and_no_bias():
    with pytest.raises(SpecError, match="activation must be None"):
        BASE.replace(op="grad_input", activation="relu")
    with pytest.raises(SpecError, match="op must be one of"):
        BASE.replace(op="backward")
    assert BASE.replace(op="transpose").bias is False
    assert BASE.replace(op="grad_filter").describe().startswith("filter gradient of: 3x2 kernel")


def test_inputs_per_op_share_the_forward_x_and_w():
    x, w, _ = ops.inputs(BASE)
    dy, w2 = ops.inputs(BASE.replace(op="grad_input"))
    x2, dy2 = ops.inputs(BASE.replace(op="grad_filter"))
    y, w3 = ops.inputs(BASE.replace(op="transpose"))
    assert dy.shape == (2, 3, 8, 6) and dy.dtype == np.float32  # the forward output's shape, the case's dtype
    np.testing.assert_array_equal(x2, x)
    for a in (w2, w3):
        np.testing.assert_array_equal(a, w)
    for a in (dy2, y):
        np.testing.assert_array_equal(a, dy)  # one seeded stream: the same bits in every process


def test_reference_per_op_is_the_grad_module_and_its_bound():
    args = (BASE.strides, BASE.padding, BASE.dilations, BASE.groups)
    dy, w = ops.inputs(BASE.replace(op="grad_input"))
    expected, bound = ops.reference(BASE.replace(op="grad_input"), (dy, w))
    np.testing.assert_array_equal(expected, grad.conv2d_grad_input(dy, w, BASE.input_shape, *args))
    np.testing.assert_allclose(bound, grad.conv2d_grad_input(np.abs(dy), np.abs(w), BASE.input_shape, *args))
    x, dy = ops.inputs(BASE.replace(op="grad_filter"))
    expected, bound = ops.reference(BASE.replace(op="grad_filter"), (x, dy))
    assert expected.shape == bound.shape == BASE.kernel_shape
    np.testing.assert_allclose(bound, grad.conv2d_grad_filter(np.abs(x), np.abs(dy), BASE.kernel_shape, *args))
    assert (bound >= np.abs(expected)).all()


class _ForwardOnly:
    name = "fwd"

    def supports(self, spec: ConvSpec) -> str | None:
        return None

    def conv2d(self, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
        return x


class _WithTranspose(_ForwardOnly):
    def transpose(self, y: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
        out = grad.conv2d_transpose(y, w, spec.input_shape, spec.strides, spec.padding, spec.dilations, spec.groups)
        return out.astype(y.dtype)


def test_an_adapter_without_the_method_is_not_asked():
    assert ops.unsupported_reason(_ForwardOnly(), BASE.replace(op="grad_input")) == "adapter has no grad_input"
    assert ops.unsupported_reason(_ForwardOnly(), BASE) is None
    spec = BASE.replace(op="transpose")
    assert ops.unsupported_reason(_WithTranspose(), spec) is None
    call, fetch = ops.bind(_WithTranspose(), spec, ops.inputs(spec))
    np.testing.assert_array_equal(fetch(call()), ops.reference(spec, ops.inputs(spec))[0].astype(np.float32))


def test_conformance_check_runs_each_op():
    from refconv.conformance.check import check

    assert check("t", _WithTranspose(), BASE.replace(op="transpose")).action == "pass"
    skipped = check("t", _WithTranspose(), BASE.replace(op="grad_filter"))
    assert skipped.action == "skip" and "adapter has no grad_filter" in skipped.message


def test_select_expands_ops_but_keeps_the_random_sweep_forward():
    edge = select("edge")
    both = select("edge,random:5", ops=OPS)
    assert len(both) == 4 * len(edge) + 5
    assert {s.op for s in select("random:5", ops=OPS)} == {"conv2d"}
    assert {s.op for s in select("random:5@grad_filter+transpose")} == {"grad_filter", "transpose"}
    assert {s.op for s in select("random:3", ops=("grad_input",))} == {"grad_input"}
    assert [s.op for s in with_ops([BASE.replace(activation="relu")], ("conv2d", "grad_input"))] == [
        "conv2d", "grad_input"]
    assert parse_ops("all") == OPS and parse_ops("grad_input+transpose") == ("grad_input", "transpose")
    with pytest.raises(SpecError, match="unknown op backward"):
        parse_ops("conv2d,backward")


def test_rows_carry_the_op_and_its_reduction_length():
    row = case_columns(BASE.replace(op="grad_filter"))
    assert row["op"] == "grad_filter" and row["K"] == 2 * 3 * 8  # n * ho * wo
    assert case_columns(BASE)["op"] == "conv2d" and case_columns(BASE)["K"] == BASE.reduction_length
    assert reduction_length(BASE.replace(op="grad_input")) == 3 * 2 * 6 // 2


def test_tolerance_per_op_adds_the_op_own_accumulation_term():
    assert tolerance_c(BASE.replace(op="grad_input")) == 16.0
    long = BASE.replace(op="grad_filter", dtype="float16", n=64, h=64, w=64)
    short = long.replace(op="grad_input")
    assert tolerance_c(long) > tolerance_c(short) > 1.0


def test_sizes_for_lists_every_input_size_of_one_forward_size():
    for padding in ("SAME", "VALID", (1, 0), (2, 1)):
        for k, s, d in ((3, 2, 1), (2, 4, 1), (3, 1, 2), (1, 3, 1)):
            sizes = sizes_for(3, k, s, d, padding)
            assert len(sizes) == s and sizes == list(range(sizes[0], sizes[0] + s))  # stride-many choices
            assert all(axis(padding, h, k, s, d).out == 3 for h in sizes)


def test_tgrid_covers_the_ambiguity_per_axis():
    specs = tgrid_cases()
    seen = {(s.kh, s.strides[0], s.dilations[0], s.padding_kind, s.h) for s in specs}
    # every h that maps to the same forward size appears on the rows axis, for a stride > kernel too
    for h in sizes_for(2, 2, 4, 1, "SAME"):
        assert (2, 4, 1, "SAME", h) in seen
    assert any(s.strides[0] > s.kh for s in specs) and any(s.groups == 2 for s in specs)
    totals = {sum(s.padding[0]) % 2 for s in specs if s.padding_kind == "EXPLICIT"}
    assert totals == {0, 1}


@pytest.mark.parametrize("spec", tgrid_cases(), ids=lambda s: s.id)
def test_framework_size_arithmetic_gives_the_case_size(spec):
    for a in axes(spec):
        assert a.full - a.before <= a.size + a.after  # the crop never needs pixels past the padding
    t = torch_transpose(spec)
    for a, p, op, crop in zip(axes(spec), t.padding, t.output_padding, t.crop or ((None, None),) * 2, strict=True):
        size = a.full - 2 * p + op  # PyTorch's ConvTranspose2d output size
        if t.crop is None:
            assert size == a.size and p == a.before and 0 <= op < max(a.stride, a.dilation)
        else:
            assert crop[1] - crop[0] == a.size and crop[1] <= size and crop[0] == a.before - p
    attrs = onnx_transpose(spec)
    for i, a in enumerate(axes(spec)):
        if "output_shape" in attrs:
            total = a.full + attrs["output_padding"][i] - a.size
            assert total >= 0 and total // 2 == a.before  # SAME_UPPER: the start crop is floor(total / 2)
        else:
            pads, op = attrs["pads"], attrs["output_padding"]
            assert a.full + op[i] - pads[i] - pads[i + 2] == a.size and pads[i] == a.before
    pad, consistent = jax_transpose(spec)
    if consistent:
        assert all(a.full - b - (e) == a.size for a, (b, e) in zip(axes(spec), pad, strict=True))
    keras = keras_transpose(spec)
    if not isinstance(keras, str):
        assert keras[0] == spec.padding.lower()


class _ReferenceEngine(_WithTranspose):
    """Every op from the reference, rounded to the case dtype: a right engine."""

    def conv2d(self, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
        return ops.reference(spec.replace(op="conv2d"), (x, w, b))[0].astype(x.dtype)

    def grad_input(self, dy: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
        return ops.reference(spec, (dy, w))[0].astype(dy.dtype)

    def grad_filter(self, x: np.ndarray, dy: np.ndarray, spec: ConvSpec) -> np.ndarray:
        return ops.reference(spec, (x, dy))[0].astype(x.dtype)


class _FlippedGradInput(_ReferenceEngine):
    """A classic porting bug: the input gradient with the kernel not flipped back (a correlation, not the adjoint)."""

    def grad_input(self, dy: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
        return ops.reference(spec, (dy, w[::-1, ::-1]))[0].astype(dy.dtype)


def test_op_relations_hold_for_a_right_engine_and_catch_a_flipped_kernel():
    from refconv.metamorphic_ops import OP_RELATIONS, check_op

    spec = ConvSpec(n=2, h=7, w=6, c_in=2, c_out=3, kh=3, kw=2, strides=(2, 1), seed=5)
    assert all(check_op(name, _ReferenceEngine(), spec).ok for name in OP_RELATIONS)
    broken = check_op("adjoint", _FlippedGradInput(), spec)
    assert not broken.ok and broken.bound_ratio > 1e3
    assert check_op("adjoint", _ForwardOnly(), spec).skipped == "the adapter has no grad_input"
