"""Metamorphic relations: two ways of computing the same convolution through one engine must agree.

Each relation takes an adapter-like callable `conv(x, w, b, spec) -> NHWC output` and compares two
computations that are equal in exact arithmetic. They need no reference output, so they catch bugs
even where the reference itself were wrong. The tolerance comes from the bound model of
`refconv.compare`: each convolution involved may err by `C * eps(dtype) * (|x| conv |w| + |b|)`
elementwise, so two sides may differ by `C * eps` times the sum of the bounds of every convolution
they ran (computed with `refconv.reference.abs_bound`); no ad hoc rtol.

>>> from refconv.reference import conv2d
>>> def ref(x, w, b, spec):
...     return conv2d(x, w, b, spec.strides, spec.padding, spec.dilations, spec.groups, spec.activation)
>>> spec = ConvSpec(n=2, h=5, w=5, c_in=2, c_out=2, kh=3, kw=3, strides=2)
>>> [r.ok for r in check_all(ref, spec)]
[True, True, True, True, True, True, True, True, True, True]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from refconv.compare import TOLERANCE_C, eps, tiny
from refconv.inputs import make_inputs, np_dtype
from refconv.ops import op_of
from refconv.padding import explicit_pads, geometry
from refconv.reference import abs_bound
from refconv.spec import ConvSpec

Array = np.ndarray
Conv = Callable[[Array, Array, "Array | None", ConvSpec], Array]


class Declined(Exception):
    """Raised by a conv callable that cannot express a case the relation needs (an adapter's supports())."""


@dataclass(frozen=True)
class RelationResult:
    """The verdict of one relation on one case: ok, or why not."""

    relation: str
    spec_id: str
    ok: bool
    skipped: str = ""  # the reason when the relation does not apply or the engine declined
    bound_ratio: float = 0.0  # max |lhs - rhs| / (eps * bound); ok when <= tolerance_c
    tolerance_c: float = 0.0
    detail: str = ""

    def message(self) -> str:
        """One line: relation, verdict and numbers."""
        if self.skipped:
            return f"{self.relation}: skipped ({self.skipped}) [{self.spec_id}]"
        verdict = "holds" if self.ok else "BROKEN"
        return (f"{self.relation}: {verdict}, bound ratio {self.bound_ratio:.2e} (C={self.tolerance_c:g})"
                f"{'; ' + self.detail if self.detail else ''} [{self.spec_id}]")


def adapter_conv(adapter: object) -> Conv:
    """Wrap an adapter (supports + conv2d) as a Conv that raises Declined with its reason."""

    def conv(x: Array, w: Array, b: Array | None, spec: ConvSpec) -> Array:
        reason = adapter.supports(spec)  # type: ignore[attr-defined]
        if reason:
            raise Declined(reason)
        return np.asarray(adapter.conv2d(x, w, b, spec))  # type: ignore[attr-defined]

    return conv


def output_size(spec: ConvSpec) -> tuple[int, int]:
    """(out_h, out_w) of a spec, as refconv.padding computes it."""
    rows, cols = geometry(spec)
    return rows.out, cols.out


def _bound(x: Array, w: Array, b: Array | None, spec: ConvSpec) -> Array:
    return abs_bound(x, w, b, spec.strides, spec.padding, spec.dilations, spec.groups)


def _verdict(name: str, spec: ConvSpec, lhs: Array, rhs: Array, bound: Array) -> RelationResult:
    c = TOLERANCE_C[spec.dtype]
    lhs, rhs = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
    if not lhs.shape == rhs.shape == np.shape(bound):
        return RelationResult(name, spec.id, False, bound_ratio=float("inf"), tolerance_c=c,
                              detail=f"shapes {lhs.shape} != {rhs.shape} (bound {np.shape(bound)})")
    if lhs.size == 0:
        return RelationResult(name, spec.id, True, tolerance_c=c)
    ratio = np.abs(lhs - rhs) / (eps(spec.dtype) * bound + tiny(spec.dtype))
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    worst = float(ratio.max())
    return RelationResult(name, spec.id, worst <= c, bound_ratio=worst, tolerance_c=c,
                          detail="" if worst <= c else f"{int((ratio > c).sum())} / {ratio.size} elements beyond")


def _cast(a: Array, spec: ConvSpec) -> Array:
    return np.asarray(a, dtype=np.float64).astype(np_dtype(spec.dtype))


def _f64(a: Array) -> Array:
    return np.asarray(a, dtype=np.float64)


def _skip(name: str, spec: ConvSpec, why: str) -> RelationResult:
    return RelationResult(name, spec.id, True, skipped=why)


def _plain(spec: ConvSpec) -> ConvSpec:
    """Linear relations need a linear map: no bias, no activation."""
    return spec.replace(bias=False, activation=None)


# --- the relations -------------------------------------------------------------------------------


def linearity_x(conv: Conv, spec: ConvSpec) -> RelationResult:
    """conv(x1 - 3 x2) == conv(x1) - 3 conv(x2)."""
    s = _plain(spec)
    x1, w, _ = make_inputs(s)
    x2, _, _ = make_inputs(s.replace(seed=s.seed + 1))
    x3 = _cast(_f64(x1) - 3 * _f64(x2), s)
    lhs = conv(x3, w, None, s)
    rhs = _f64(conv(x1, w, None, s)) - 3 * _f64(conv(x2, w, None, s))
    bound = _bound(x3, w, None, s) + _bound(x1, w, None, s) + 3 * _bound(x2, w, None, s)
    return _verdict("linearity_x", s, lhs, rhs, bound)


def linearity_w(conv: Conv, spec: ConvSpec) -> RelationResult:
    """conv(x, w1 + 0.5 w2) == conv(x, w1) + 0.5 conv(x, w2)."""
    s = _plain(spec)
    x, w1, _ = make_inputs(s)
    _, w2, _ = make_inputs(s.replace(seed=s.seed + 1))
    w3 = _cast(_f64(w1) + 0.5 * _f64(w2), s)
    lhs = conv(x, w3, None, s)
    rhs = _f64(conv(x, w1, None, s)) + 0.5 * _f64(conv(x, w2, None, s))
    bound = _bound(x, w3, None, s) + _bound(x, w1, None, s) + 0.5 * _bound(x, w2, None, s)
    return _verdict("linearity_w", s, lhs, rhs, bound)


def batch_split(conv: Conv, spec: ConvSpec) -> RelationResult:
    """conv(x)[:k] == conv(x[:k]) and conv(x)[k:] == conv(x[k:])."""
    if spec.n < 2:
        return _skip("batch_split", spec, "batch 1")
    x, w, b = make_inputs(spec)
    k = spec.n // 2
    lhs = conv(x, w, b, spec)
    rhs = np.concatenate([_f64(conv(x[:k], w, b, spec.replace(n=k))),
                          _f64(conv(x[k:], w, b, spec.replace(n=spec.n - k)))])
    return _verdict("batch_split", spec, lhs, rhs, 2 * _bound(x, w, b, spec))


def layout(conv: Conv, spec: ConvSpec) -> RelationResult:
    """The same values called as NHWC and as NCHW give the same NHWC result."""
    x, w, b = make_inputs(spec)
    nhwc, nchw = spec.replace(layout="NHWC"), spec.replace(layout="NCHW")
    lhs, rhs = conv(x, w, b, nhwc), conv(x, w, b, nchw)
    return _verdict("layout", spec, lhs, rhs, 2 * _bound(x, w, b, spec))


def groups_split(conv: Conv, spec: ConvSpec) -> RelationResult:
    """groups=g equals convolving each group's channels with its own filters and concatenating."""
    g = spec.groups
    if g == 1:
        return _skip("groups_split", spec, "groups 1")
    x, w, b = make_inputs(spec)
    cg, og = spec.c_in // g, spec.c_out // g
    part = spec.replace(c_in=cg, c_out=og, groups=1)
    lhs = conv(x, w, b, spec)
    rhs = np.concatenate([
        _f64(conv(x[..., i * cg:(i + 1) * cg], w[..., i * og:(i + 1) * og],
                  None if b is None else b[i * og:(i + 1) * og], part))
        for i in range(g)
    ], axis=-1)
    return _verdict("groups_split", spec, lhs, rhs, 2 * _bound(x, w, b, spec))


def pad_then_valid(conv: Conv, spec: ConvSpec) -> RelationResult:
    """Padding (SAME or explicit) equals zero-padding the input by refconv.padding's amounts, then VALID."""
    if spec.padding == "VALID":
        return _skip("pad_then_valid", spec, "VALID has no padding")
    x, w, b = make_inputs(spec)
    (t, bo), (le, r) = explicit_pads(spec)
    xp = np.pad(x, ((0, 0), (t, bo), (le, r), (0, 0)))
    lhs = conv(x, w, b, spec)
    rhs = conv(xp, w, b, spec.replace(h=xp.shape[1], w=xp.shape[2], padding="VALID"))
    return _verdict("pad_then_valid", spec, lhs, rhs, 2 * _bound(x, w, b, spec))


def stride_subsample(conv: Conv, spec: ConvSpec) -> RelationResult:
    """Stride s equals stride 1 with the same explicit pads, subsampled every s pixels."""
    if spec.strides == (1, 1):
        return _skip("stride_subsample", spec, "stride 1")
    x, w, b = make_inputs(spec)
    sh, sw = spec.strides
    dense = spec.replace(strides=(1, 1), padding=explicit_pads(spec))
    lhs = conv(x, w, b, spec)
    rhs = _f64(conv(x, w, b, dense))[:, ::sh, ::sw, :]
    return _verdict("stride_subsample", spec, lhs, rhs, 2 * _bound(x, w, b, spec))


def one_by_one_matmul(conv: Conv, spec: ConvSpec) -> RelationResult:
    """A 1x1 VALID convolution is a matmul over channels of the strided pixels (groups 1)."""
    s = spec.replace(kh=1, kw=1, padding="VALID", dilations=(1, 1), groups=1, activation=None)
    x, w, b = make_inputs(s)
    sh, sw = s.strides
    pixels = _f64(x)[:, ::sh, ::sw, :]
    rhs = pixels @ _f64(w)[0, 0] + (0.0 if b is None else _f64(b))
    mag = np.abs(pixels) @ np.abs(_f64(w)[0, 0]) + (0.0 if b is None else np.abs(_f64(b)))
    return _verdict("one_by_one_matmul", s, conv(x, w, b, s), rhs, 2 * mag)


def dilation_zero_insert(conv: Conv, spec: ConvSpec) -> RelationResult:
    """Dilation d equals dilation 1 with a kernel that has d - 1 zeros inserted between taps."""
    if spec.dilations == (1, 1):
        return _skip("dilation_zero_insert", spec, "dilation 1")
    x, w, b = make_inputs(spec)
    dh, dw = spec.dilations
    wide = np.zeros(((spec.kh - 1) * dh + 1, (spec.kw - 1) * dw + 1, *w.shape[2:]), dtype=w.dtype)
    wide[::dh, ::dw] = w
    dense = spec.replace(kh=wide.shape[0], kw=wide.shape[1], dilations=(1, 1))
    lhs = conv(x, w, b, spec)
    rhs = conv(x, wide, b, dense)
    return _verdict("dilation_zero_insert", spec, lhs, rhs, 2 * _bound(x, w, b, spec))


def bias_after(conv: Conv, spec: ConvSpec) -> RelationResult:
    """conv(x, w, b) equals conv(x, w) + b (then the activation)."""
    s = spec.replace(bias=True)
    x, w, b = make_inputs(s)
    assert b is not None
    lhs = conv(x, w, b, s)
    rhs = _f64(conv(x, w, None, s.replace(bias=False, activation=None))) + _f64(b)
    if s.activation == "relu":
        rhs = np.maximum(rhs, 0.0)
    return _verdict("bias_after", s, lhs, rhs, 2 * _bound(x, w, b, s))


RELATIONS: dict[str, Callable[[Conv, ConvSpec], RelationResult]] = {
    f.__name__: f
    for f in (linearity_x, linearity_w, batch_split, layout, groups_split, pad_then_valid, stride_subsample,
              one_by_one_matmul, dilation_zero_insert, bias_after)
}


class _BadOutput(Exception):
    """An engine returned something that is not the derived case's output (wrong shape, not numbers)."""


def _checked(conv: Conv) -> Conv:
    """`conv`, with every output checked against its spec's shape before a relation combines it."""

    def call(x: Array, w: Array, b: Array | None, spec: ConvSpec) -> Array:
        out = conv(x, w, b, spec)
        # the forward output's shape; other ops (refconv.ops) bring their own shapes, judged by _verdict
        want = (spec.n, *output_size(spec), spec.c_out) if op_of(spec) == "conv2d" else None
        try:
            got = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise _BadOutput(f"output of {spec.id} is not numeric ({type(out).__name__}: {exc})") from None
        if want is not None and got.shape != want:
            raise _BadOutput(f"output of {spec.id} has shape {got.shape}, expected {want}")
        return got

    return call


def check(name: str, conv: Conv, spec: ConvSpec) -> RelationResult:
    """Run one relation; a declined derived case makes it skipped, an unusable output broken, with the reason."""
    if getattr(spec, "values", "normal") != "normal":
        # the relations are identities of exact arithmetic: NaN, Inf and overflow break them on a right engine
        # (a zero weight that a linear combination makes non-zero, Inf - Inf), so special-value cases skip them
        return _skip(name, spec, f"special values ({spec.values}) are judged against the reference only")
    try:
        with np.errstate(all="ignore"):  # non-finite values are judged by the verdict, not printed as warnings
            return RELATIONS[name](_checked(conv), spec)
    except Declined as exc:
        return _skip(name, spec, f"declined: {exc}")
    except _BadOutput as exc:
        return RelationResult(name, spec.id, False, bound_ratio=float("inf"), tolerance_c=TOLERANCE_C[spec.dtype],
                              detail=str(exc))


def check_all(conv: Conv, spec: ConvSpec) -> Iterator[RelationResult]:
    """Every relation on one case, in a fixed order."""
    for name in RELATIONS:
        yield check(name, conv, spec)

