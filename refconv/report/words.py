"""A result row in words: the case, its padding geometry, the numbers and the framework arguments."""

from __future__ import annotations

from typing import Any

from refconv import padding as _padding
from refconv.errors import RefconvError
from refconv.spec import ConvSpec


def spec_of(case_id: str) -> ConvSpec | None:
    """The ConvSpec of a stored case id, or None when the id cannot be parsed (a foreign or newer id)."""
    try:
        return ConvSpec.from_id(case_id)
    except RefconvError:
        return None


def geometry_words(row: dict[Any, Any]) -> str:
    """'pads 0 before / 1 after, output 3x3' from the row's pad columns (what the reference applied)."""
    try:
        t, b, left, r = (int(row[k]) for k in ("pad_top", "pad_bottom", "pad_left", "pad_right"))
        out = f"output {int(row['out_h'])}x{int(row['out_w'])}"
    except (KeyError, TypeError, ValueError):
        return ""
    if (t, b) == (left, r):
        pads = "no padding" if t == b == 0 else f"pads {t} before / {b} after"
    else:
        pads = f"rows pad {t} top / {b} bottom, cols pad {left} left / {r} right"
    return f"{pads}, {out}"


def case_words(row: dict[Any, Any]) -> str:
    """'3x3 kernel, stride 2, SAME, 6x6 input, ...: pads 0 before / 1 after, output 3x3'."""
    spec = spec_of(str(row.get("case_id", "")))
    described = spec.describe() if spec is not None else "(case id not parseable by this refconv version)"
    geometry = geometry_words(row)
    return f"{described}: {geometry}" if geometry else described


def numbers_words(row: dict[Any, Any]) -> str:
    """The figures of a finding: bound ratio and errors for a mismatch, shapes for a wrong shape."""
    outcome = row.get("outcome")
    if outcome == "mismatch":
        return (
            f"{_int(row.get('mismatched'))} / {_int(row.get('n_elements'))} elements beyond tolerance; "
            f"bound ratio {_g(row.get('bound_ratio'))} > C={_g(row.get('tolerance_c'))}; "
            f"max abs err {_g(row.get('max_abs_err'))}, max rel err {_g(row.get('max_rel_err'))}, "
            f"{_g(row.get('max_ulp'))} ulp"
        )
    if outcome == "wrong_shape":
        return f"shape {row.get('actual_shape') or '?'}, expected {row.get('expected_shape') or '?'}"
    expected = row.get("expected_shape")
    return f"expected shape {expected}" if expected else ""


def framework_arguments(spec: ConvSpec) -> dict[str, str]:
    """What each framework is told for this case's padding (refconv.padding's translations)."""
    pad, conv_pad = _padding.for_torch(spec)
    torch = f"F.pad{pad} then padding={conv_pad!r}" if pad else f"padding={conv_pad!r}"
    return {
        "tf": f"padding={_padding.for_tf(spec)!r}",
        "torch": torch,
        "jax": f"padding={_padding.for_jax(spec)!r}",
        "onnx": ", ".join(f"{k}={v!r}" for k, v in _padding.for_onnx(spec).items()),
    }


def _g(value: Any) -> str:
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return "?"


def _int(value: Any) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "?"
