"""`ConvSpec`: one convolution case, frozen, validated on construction, with a stable id.

>>> s = ConvSpec(n=2, h=7, w=5, c_in=3, c_out=4, kh=3, kw=2, strides=(2, 1), padding="same")
>>> s.id
'n2-7x5x3-k3x2x4-s2x1-same-f32'
>>> ConvSpec.from_id(s.id) == s
True
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from refconv.errors import SpecError

DTYPES = ("float16", "bfloat16", "float32", "float64")
DTYPE_CODES = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}
LAYOUTS = ("NHWC", "NCHW", "channels_last")
LAYOUT_CODES = {"NHWC": "", "NCHW": "nchw", "channels_last": "cl"}
ACTIVATIONS = (None, "relu")
# What a case checks (refconv.ops): the forward conv, its input or filter gradient, or the transposed conv.
OPS = ("conv2d", "grad_input", "grad_filter", "transpose")
# Special values in the inputs (refconv.special, docs/special-values.md): "normal", or "<kind>_<place>".
VALUE_KINDS = ("nan", "inf", "ninf", "infmix", "inf0", "negzero", "subnormal", "huge")
VALUE_PLACES = ("mid", "corner", "ring")
VALUES = ("normal",) + tuple(f"{k}_{p}" for k in VALUE_KINDS for p in VALUE_PLACES)

Pads = tuple[tuple[int, int], tuple[int, int]]
Padding = str | Pads


def _pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, bool):
        raise SpecError(f"{name} must be positive integers, got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise SpecError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (a, b)):
        raise SpecError(f"{name} must be positive integers, got {tuple(value)!r}")
    return (a, b)


def normalize_padding(value: Any) -> Padding:
    """'same'/'valid' (any case) or ((top, bottom), (left, right)) of non-negative ints."""
    if isinstance(value, str):
        upper = value.upper()
        if upper not in ("SAME", "VALID"):
            raise SpecError(f"padding must be 'SAME', 'VALID' or ((top, bottom), (left, right)), got {value!r}")
        return upper
    try:
        (top, bottom), (left, right) = value
    except (TypeError, ValueError):
        raise SpecError(f"padding must be 'SAME', 'VALID' or ((top, bottom), (left, right)), got {value!r}") from None
    pads = (top, bottom, left, right)
    if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pads):
        raise SpecError(f"padding must be non-negative integers, got {value!r}")
    return ((top, bottom), (left, right))


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SpecError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ConvSpec:
    """One conv2d case: shapes, geometry, dtype, layout and the seed of its inputs."""

    n: int
    h: int
    w: int
    c_in: int
    c_out: int
    kh: int
    kw: int
    strides: tuple[int, int] = (1, 1)
    padding: Padding = "SAME"
    dilations: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True
    dtype: str = "float32"
    layout: str = "NHWC"
    activation: str | None = None
    seed: int = 0
    op: str = "conv2d"
    values: str = "normal"
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for f in ("n", "h", "w", "c_in", "c_out", "kh", "kw", "groups"):
            _positive(f, getattr(self, f))
        object.__setattr__(self, "strides", _pair("strides", self.strides))
        object.__setattr__(self, "dilations", _pair("dilations", self.dilations))
        object.__setattr__(self, "padding", normalize_padding(self.padding))
        if self.c_in % self.groups or self.c_out % self.groups:
            raise SpecError(
                f"groups must divide c_in and c_out, got groups={self.groups} with c_in={self.c_in}, c_out={self.c_out}"
            )
        if self.dtype not in DTYPES:
            raise SpecError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.layout not in LAYOUTS:
            raise SpecError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.activation not in ACTIVATIONS:
            raise SpecError(f"activation must be None or 'relu', got {self.activation!r}")
        if not isinstance(self.bias, bool):
            raise SpecError(f"bias must be True or False, got {self.bias!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise SpecError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.values not in VALUES:
            raise SpecError(f"values must be 'normal' or '<kind>_<place>' with kind in {', '.join(VALUE_KINDS)} and "
                            f"place in {', '.join(VALUE_PLACES)}, got {self.values!r}")
        if self.op not in OPS:
            raise SpecError(f"op must be one of {', '.join(OPS)}, got {self.op!r}")
        if self.op != "conv2d":
            if self.activation is not None:
                raise SpecError(f"op {self.op} checks the convolution alone; activation must be None, "
                                f"got {self.activation!r}")
            object.__setattr__(self, "bias", False)  # no op but the forward one takes a bias

    # --- derived facts -------------------------------------------------------------------
    @property
    def padding_kind(self) -> str:
        """'SAME', 'VALID' or 'EXPLICIT'."""
        return self.padding if isinstance(self.padding, str) else "EXPLICIT"

    @property
    def reduction_length(self) -> int:
        """K = kh * kw * c_in / groups, the length of each output's dot product."""
        return self.kh * self.kw * self.c_in // self.groups

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.h, self.w, self.c_in)

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """HWIO with TensorFlow's grouped layout: (kh, kw, c_in / groups, c_out)."""
        return (self.kh, self.kw, self.c_in // self.groups, self.c_out)

    def replace(self, **changes: Any) -> ConvSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        return d

    # --- the id ------------------------------------------------------------------------
    @property
    def id(self) -> str:
        """Readable and stable: n2-7x5x3-k3x2x4-s2x1-same-f32 plus optional tokens."""
        if isinstance(self.padding, str):
            pad = self.padding.lower()
        else:
            (t, b), (left, r) = self.padding
            pad = f"p{t}_{b}x{left}_{r}"
        parts = [
            f"n{self.n}",
            f"{self.h}x{self.w}x{self.c_in}",
            f"k{self.kh}x{self.kw}x{self.c_out}",
            f"s{self.strides[0]}x{self.strides[1]}",
            pad,
            DTYPE_CODES[self.dtype],
        ]
        if self.dilations != (1, 1):
            parts.append(f"d{self.dilations[0]}x{self.dilations[1]}")
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        if LAYOUT_CODES[self.layout]:
            parts.append(LAYOUT_CODES[self.layout])
        if self.activation:
            parts.append(self.activation)
        if not self.bias and self.op == "conv2d":
            parts.append("nobias")
        if self.seed:
            parts.append(f"r{self.seed}")
        if self.op != "conv2d":
            parts.append(self.op)
        if self.values != "normal":
            parts.append(f"v{self.values}")
        return "-".join(parts)

    @classmethod
    def from_id(cls, case_id: str) -> ConvSpec:
        """Parse an id written by `ConvSpec.id`; a malformed one raises SpecError."""
        if not isinstance(case_id, str):
            raise SpecError(f"a case id must be text, got {type(case_id).__name__} {case_id!r}")
        m = _ID_RE.fullmatch(case_id.strip())
        if not m:
            raise SpecError(
                f"malformed case id {case_id!r}; expected e.g. "
                "'n2-7x5x3-k3x2x4-s2x1-same-f32[-d2x1][-g2][-nchw|-cl][-relu][-nobias][-r7][-grad_input][-vnan_mid]'"
            )
        g = m.groupdict()
        codes = {v: k for k, v in DTYPE_CODES.items()}
        layouts = {v: k for k, v in LAYOUT_CODES.items() if v}
        padding: Padding
        if g["pad"] in ("same", "valid"):
            padding = g["pad"].upper()
        else:
            padding = ((int(g["pt"]), int(g["pb"])), (int(g["pl"]), int(g["pr"])))
        return cls(
            n=int(g["n"]), h=int(g["h"]), w=int(g["w"]), c_in=int(g["ci"]),
            kh=int(g["kh"]), kw=int(g["kw"]), c_out=int(g["co"]),
            strides=(int(g["sh"]), int(g["sw"])),
            padding=padding,
            dtype=codes[g["dt"]],
            dilations=(int(g["dh"]), int(g["dw"])) if g["dh"] else (1, 1),
            groups=int(g["g"]) if g["g"] else 1,
            layout=layouts[g["layout"]] if g["layout"] else "NHWC",
            activation=g["act"],
            bias=not g["nobias"],
            seed=int(g["seed"]) if g["seed"] else 0,
            op=g["op"] or "conv2d",
            values=g["values"] or "normal",
        )

    def describe(self) -> str:
        """The case in words, for messages and reports."""
        pad = self.padding if isinstance(self.padding, str) else f"explicit pads {self.padding}"
        sh, sw = self.strides
        words = [
            f"{self.kh}x{self.kw} kernel",
            f"stride {sh}" if sh == sw else f"stride {sh}x{sw}",
            pad,
            f"{self.h}x{self.w} input",
            f"{self.c_in}->{self.c_out} channels",
            f"batch {self.n}",
        ]
        if self.dilations != (1, 1):
            words.append(f"dilation {self.dilations[0]}x{self.dilations[1]}")
        if self.groups != 1:
            words.append("depthwise" if self.groups == self.c_in else f"groups {self.groups}")
        if self.layout != "NHWC":
            words.append(self.layout)
        if self.activation:
            words.append(self.activation)
        if not self.bias and self.op == "conv2d":
            words.append("no bias")
        words.append(self.dtype)
        if self.values != "normal":
            words.append(f"special values {self.values}")
        text = ", ".join(words)
        return text if self.op == "conv2d" else f"{OP_WORDS[self.op]} of: {text}"


OP_WORDS = {"grad_input": "input gradient", "grad_filter": "filter gradient", "transpose": "transposed conv"}

_ID_RE = re.compile(
    r"n(?P<n>\d+)-(?P<h>\d+)x(?P<w>\d+)x(?P<ci>\d+)-k(?P<kh>\d+)x(?P<kw>\d+)x(?P<co>\d+)"
    r"-s(?P<sh>\d+)x(?P<sw>\d+)"
    r"-(?P<pad>same|valid|p(?P<pt>\d+)_(?P<pb>\d+)x(?P<pl>\d+)_(?P<pr>\d+))"
    r"-(?P<dt>f16|bf16|f32|f64)"
    r"(?:-d(?P<dh>\d+)x(?P<dw>\d+))?"
    r"(?:-g(?P<g>\d+))?"
    r"(?:-(?P<layout>nchw|cl))?"
    r"(?:-(?P<act>relu))?"
    r"(?:-(?P<nobias>nobias))?"
    r"(?:-r(?P<seed>\d+))?"
    r"(?:-(?P<op>grad_input|grad_filter|transpose))?"
    r"(?:-v(?P<values>[a-z0-9]+_[a-z]+))?"
)
