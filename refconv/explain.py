"""One case explained: output size and each side's padding with the arithmetic, and what each framework is told.

Every number comes from `refconv.padding` (the rules are written once); this module only shows the
arithmetic that produces them, in the words of SEMANTICS.md.

>>> print(axis_line("cols", "VALID", size=7, k=3, s=2))
cols: VALID, in=7, k=3, s=2 -> out = max(ceil((7 - 3 + 1)/2), 0) = 3; no padding
"""

from __future__ import annotations

from refconv import padding
from refconv.params import param_count_of
from refconv.spec import ConvSpec, SpecError

_SIDES = {"rows": ("top", "bottom"), "cols": ("left", "right")}


def resolve(text: str) -> ConvSpec:
    """A case id, or the name of an edge-corpus case; anything else raises SpecError."""
    text = text.strip()
    if text.startswith("n") and text[1:2].isdigit():
        return ConvSpec.from_id(text)
    from refconv.cases import edge_cases

    for spec in edge_cases():
        if spec.name == text:
            return spec
    raise SpecError(f"{text!r} is neither a case id (e.g. 'n1-6x6x3-k3x3x2-s2x2-same-f32') nor an edge case name")


def axis_line(label: str, pad: str | tuple[int, int], size: int, k: int, s: int, d: int = 1) -> str:
    """One axis: the rule, its inputs, and the arithmetic giving out, before and after."""
    a = padding.axis(pad, size, k, s, d)
    first, second = _SIDES[label]
    k_eff = padding.effective_kernel(k, d)
    kernel = f"k={k}" if d == 1 else f"k={k}, d={d} -> k_eff = ({k}-1)*{d} + 1 = {k_eff}"
    if pad == "SAME":
        total = a.before + a.after
        odd = " (odd total: the extra pixel goes after)" if total % 2 else ""
        how = (f"out = ceil({size}/{s}) = {a.out}; total = max(({a.out}-1)*{s} + {k_eff} - {size}, 0) = {total}"
               f" -> {first} {a.before}, {second} {a.after}{odd}")
        return f"{label}: SAME, in={size}, {kernel}, s={s} -> {how}"
    if pad == "VALID":
        empty = " (the kernel does not fit: empty output)" if a.out == 0 else ""
        how = f"out = max(ceil(({size} - {k_eff} + 1)/{s}), 0) = {a.out}{empty}; no padding"
        return f"{label}: VALID, in={size}, {kernel}, s={s} -> {how}"
    assert not isinstance(pad, str), f"padding must be 'SAME', 'VALID' or (before, after), got {pad!r}"
    before, after = pad
    span = size + before + after - k_eff
    how = (f"out = floor(({size} + {before} + {after} - {k_eff})/{s}) + 1 = {a.out}" if span >= 0 else
           f"{size} + {before} + {after} < {k_eff}: the window never fits, out = 0")
    return f"{label}: explicit pads {first} {before}, {second} {after}, in={size}, {kernel}, s={s} -> {how}"


def _axes(spec: ConvSpec) -> list[str]:
    if isinstance(spec.padding, str):
        pads: tuple[str | tuple[int, int], str | tuple[int, int]] = (spec.padding, spec.padding)
    else:
        pads = spec.padding
    (sh, sw), (dh, dw) = spec.strides, spec.dilations
    return [axis_line("rows", pads[0], spec.h, spec.kh, sh, dh), axis_line("cols", pads[1], spec.w, spec.kw, sw, dw)]


def framework_lines(spec: ConvSpec) -> list[str]:
    """What refconv's adapters tell each framework for this case (from refconv.padding's translations)."""
    (t, b), (left, r) = padding.explicit_pads(spec)
    common = f"strides={spec.strides}, dilations={spec.dilations}"
    groups = f", feature_group_count={spec.groups}" if spec.groups != 1 else ""
    tf_format = "NCHW" if spec.layout == "NCHW" else "NHWC"
    pre, torch_pad = padding.for_torch(spec)
    torch_text = (f"F.pad(x, {pre}) [(left, right, top, bottom)], then F.conv2d(padding={torch_pad!r})" if pre
                  else f"F.conv2d(padding={torch_pad!r})")
    torch_text += f", groups={spec.groups}" if spec.groups != 1 else ""
    jax_pad = padding.for_jax(spec)
    jax_text = f"padding={jax_pad!r}{groups}"
    if isinstance(jax_pad, str) and jax_pad == "SAME":
        jax_text += f" (resolves to [({t}, {b}), ({left}, {r})])"
    onnx = padding.for_onnx(spec)
    onnx_text = ", ".join(f"{k}={v!r}" for k, v in onnx.items())
    if onnx.get("auto_pad") == "SAME_UPPER":
        onnx_text += f" (pads resolve to [{t}, {left}, {b}, {r}] as [top, left, bottom, right])"
    return [
        f"  TensorFlow  tf.nn.conv2d(data_format={tf_format!r}, padding={padding.for_tf(spec, tf_format)!r}), {common}",
        f"  PyTorch     {torch_text}; x NCHW, weight OIHW {(spec.c_out, spec.c_in // spec.groups, spec.kh, spec.kw)}",
        f"  JAX         lax.conv_general_dilated({jax_text})",
        f"  ONNX        Conv({onnx_text}{', group=' + str(spec.groups) if spec.groups != 1 else ''}), NCHW/OIHW",
    ]


def explain(spec: ConvSpec) -> str:
    """The whole explanation of one case, as printed by `refconv explain`."""
    (t, b), (left, r) = padding.explicit_pads(spec)
    k = spec.kh * spec.kw * (spec.c_in // spec.groups)
    bias = " + 1" if spec.bias else ""
    lines = [
        f"case {spec.id}" + (f"  [{spec.name}]" if spec.name else ""),
        f"  {spec.describe()}",
        *_axes(spec),
        f"output shape (NHWC): {padding.output_shape(spec)}",
        f"padding applied: top {t}, bottom {b}, left {left}, right {r}",
        f"parameters: ({spec.kh}*{spec.kw}*{spec.c_in // spec.groups}{bias}) * {spec.c_out} = {param_count_of(spec)}"
        f"  (each output is a dot product of length K = {k})",
        "what each framework is told:",
        *framework_lines(spec),
    ]
    return "\n".join(lines)
