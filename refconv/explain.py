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


def transpose_lines(spec: ConvSpec) -> list[str]:
    """The transposed conv's size choice per axis and each framework's call for it (refconv.grad_padding)."""
    from refconv import grad_padding as gp

    lines = [f"the transposed conv maps y {padding.output_shape(spec)} back to {spec.input_shape}: input sizes with "
             "the same forward size are ambiguous, so each framework is told which one"]
    for label, a in zip(("rows", "cols"), gp.axes(spec), strict=True):
        sizes = gp.sizes_for(a.out, (a.k_eff - 1) // a.dilation + 1, a.stride, a.dilation, _axis_pad(spec, label))
        lines.append(f"{label}: L = ({a.out}-1)*{a.stride} + {a.k_eff} = {a.full}; crop {a.before} before; "
                     f"rem = {a.size} + {a.before} + {a.after} - {a.full} = {a.rem}; sizes with out={a.out}: {sizes}")
    t = gp.torch_transpose(spec)
    torch_text = f"padding={t.padding}, output_padding={t.output_padding}"
    torch_text += (" (output_padding = before - after + rem per axis)" if t.crop is None else
                   f" then crop rows {t.crop[0]}, cols {t.crop[1]} (symmetric padding cannot say the forward pads)")
    keras = gp.keras_transpose(spec)
    jax_pad, consistent = gp.jax_transpose(spec)
    onnx = ", ".join(f"{k}={v!r}" for k, v in gp.onnx_transpose(spec).items())
    return lines + [
        "what each framework is told (transpose):",
        f"  TensorFlow  tf.nn.conv2d_transpose(output_shape={list(spec.input_shape)}, "
        f"padding={padding.for_tf(spec)!r}, strides={spec.strides}, dilations={spec.dilations})",
        f"  PyTorch     F.conv_transpose2d({torch_text}), weight = the forward OIHW",
        "  Keras       " + (keras if isinstance(keras, str) else
                             f"Conv2DTranspose(padding={keras[0]!r}, output_padding={keras[1]})"),
        f"  JAX         lax.conv_transpose(padding={jax_pad!r}, transpose_kernel=True"
        f"{', use_consistent_padding=True' if consistent else ''})",
        f"  ONNX        ConvTranspose({onnx}), W = the forward OIHW",
    ]


def _axis_pad(spec: ConvSpec, label: str) -> str | tuple[int, int]:
    if isinstance(spec.padding, str):
        return spec.padding
    return spec.padding[0] if label == "rows" else spec.padding[1]


def grad_lines(spec: ConvSpec) -> list[str]:
    """How each framework is asked for the spec's gradient (the forward call, differentiated)."""
    from refconv.op_tolerance import reduction_length

    what = "dL/dx of the input's shape" if spec.op == "grad_input" else "dL/dw in HWIO"
    return [
        f"{spec.op}: {what}, given dy of the forward output's shape; each element sums "
        f"{reduction_length(spec)} terms at most",
        "what each framework is told (the forward call above, differentiated):",
        "  TensorFlow  tf.GradientTape over tf.nn.conv2d; tape.gradient(y, x or filters, output_gradients=dy)",
        "  PyTorch     torch.autograd.grad(F.conv2d(...), x or weight, dy); torch-nn through nn.Conv2d",
        "  JAX         jax.vjp(lambda x or w: lax.conv_general_dilated(...), .)[1](dy)",
        "  Keras       tf.GradientTape over the Conv2D layer (input, or layer.kernel)",
        "  ONNX        no gradient ops (onnxruntime and onnx-ref offer transpose only)",
    ]


def explain(spec: ConvSpec) -> str:
    """The whole explanation of one case, as printed by `refconv explain`."""
    text = _explain_forward(spec)
    if spec.op == "transpose":
        return "\n".join([text, *transpose_lines(spec)])
    if spec.op in ("grad_input", "grad_filter"):
        return "\n".join([text, *grad_lines(spec)])
    return text


def _explain_forward(spec: ConvSpec) -> str:
    """The forward convolution's explanation (every op's case describes one)."""
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
