"""`refconv explain`: the padding arithmetic line by line, and what each framework is told."""

import pytest

from refconv import ConvSpec
from refconv.cli import main
from refconv.explain import axis_line, explain, framework_lines, resolve


def test_same_odd_total_line_hand_computed():
    assert axis_line("rows", "SAME", size=6, k=3, s=2) == (
        "rows: SAME, in=6, k=3, s=2 -> out = ceil(6/2) = 3; total = max((3-1)*2 + 3 - 6, 0) = 1"
        " -> top 0, bottom 1 (odd total: the extra pixel goes after)"
    )


def test_same_kernel_equals_stride_has_no_padding():
    assert axis_line("cols", "SAME", size=4, k=2, s=2) == (
        "cols: SAME, in=4, k=2, s=2 -> out = ceil(4/2) = 2; total = max((2-1)*2 + 2 - 4, 0) = 0 -> left 0, right 0"
    )


def test_valid_smaller_than_kernel_is_empty():
    assert axis_line("rows", "VALID", size=2, k=7, s=1) == (
        "rows: VALID, in=2, k=7, s=1 -> out = max(ceil((2 - 7 + 1)/1), 0) = 0 (the kernel does not fit: empty output);"
        " no padding"
    )


def test_explicit_with_dilation():
    assert axis_line("rows", (1, 2), size=5, k=3, s=1, d=2) == (
        "rows: explicit pads top 1, bottom 2, in=5, k=3, d=2 -> k_eff = (3-1)*2 + 1 = 5, s=1"
        " -> out = floor((5 + 1 + 2 - 5)/1) + 1 = 4"
    )


def test_frameworks_are_told_what_refconv_padding_says():
    spec = ConvSpec.from_id("n1-6x6x3-k3x3x2-s2x2-same-f32")
    tf, torch, jax, onnx = framework_lines(spec)
    assert "padding='SAME'" in tf
    assert "F.pad(x, (0, 1, 0, 1))" in torch and "padding='valid'" in torch  # asymmetric SAME at stride 2
    assert "[(0, 1), (0, 1)]" in jax
    assert "auto_pad='SAME_UPPER'" in onnx and "[0, 0, 1, 1]" in onnx


def test_explicit_pads_translation():
    spec = ConvSpec(n=1, h=5, w=5, c_in=2, c_out=2, kh=3, kw=3, padding=((1, 1), (2, 2)), groups=2)
    tf, torch, jax, onnx = framework_lines(spec)
    assert "[[0, 0], [1, 1], [2, 2], [0, 0]]" in tf
    assert "padding=(1, 2)" in torch and "groups=2" in torch
    assert "[(1, 1), (2, 2)]" in jax and "feature_group_count=2" in jax
    assert "pads=[1, 2, 1, 2]" in onnx and "group=2" in onnx


def test_whole_explanation():
    text = explain(resolve("kernel_equals_stride_zero_padding"))
    assert text.splitlines()[0] == "case n1-4x4x1-k2x2x1-s2x2-same-f32  [kernel_equals_stride_zero_padding]"
    assert "output shape (NHWC): (1, 2, 2, 1)" in text
    assert "padding applied: top 0, bottom 0, left 0, right 0" in text
    assert "parameters: (2*2*1 + 1) * 1 = 5" in text


def test_cli_prints_and_exits_0(capsys):
    assert main(["explain", "n1-6x6x3-k3x3x2-s2x2-same-f32"]) == 0
    out = capsys.readouterr().out
    assert "-> top 0, bottom 1" in out and "output shape (NHWC): (1, 3, 3, 2)" in out


@pytest.mark.parametrize("bad", ["n1-6x6x3-k3x3x2-s0x2-same-f32", "n1-6x6", "no_such_case"])
def test_cli_bad_id_is_one_line_exit_2(bad, capsys):
    assert main(["explain", bad]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("refconv explain: error:")
