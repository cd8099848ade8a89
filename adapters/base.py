"""The adapter protocol: the small contract every engine under test fulfils.

An adapter translates arguments, layouts and dtypes; it never corrects, filters or reshapes what
its framework returned, and never routes around a case where the framework misbehaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from refconv.spec import ConvSpec


class Unsupported(Exception):
    """Raised by an adapter that finds, at call time, that it cannot express a case."""


@runtime_checkable
class Adapter(Protocol):
    """x is NHWC and w is HWIO in the case's dtype, b has shape (c_out,) or is None; returns NHWC."""

    name: str

    def version(self) -> str: ...

    def supports(self, spec: ConvSpec) -> str | None: ...

    def conv2d(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray: ...


class Prepared(NamedTuple):
    """A framework call split so only the call itself is timed."""

    call: Callable[[], Any]  # the framework's convolution alone (synchronised if asynchronous)
    fetch: Callable[[Any], np.ndarray]  # the call's result as an NHWC NumPy array, values untouched


class PreparedAdapter:
    """Base for built-in adapters: implement `prepare`, get `conv2d` and split timing for free."""

    name = "?"

    def version(self) -> str:
        return "?"

    def supports(self, spec: ConvSpec) -> str | None:
        return None

    def settings(self) -> dict[str, Any]:
        """Precision and threading settings in force, recorded with every row."""
        return {}

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        raise NotImplementedError

    def conv2d(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
        prepared = self.prepare(x, w, b, spec)
        return prepared.fetch(prepared.call())


def nhwc_to_nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def hwio_to_oihw(w: np.ndarray) -> np.ndarray:
    """TF's grouped HWIO (kh, kw, c_in/g, c_out) to PyTorch/ONNX OIHW (c_out, c_in/g, kh, kw)."""
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


class OpsFromPrepared:
    """grad_input / grad_filter / transpose as one untimed call of the adapter's prepare_<op> methods."""

    def grad_input(self, dy: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
        p = self.prepare_grad_input(dy, w, spec)  # type: ignore[attr-defined]
        return p.fetch(p.call())  # type: ignore[no-any-return]

    def grad_filter(self, x: np.ndarray, dy: np.ndarray, spec: ConvSpec) -> np.ndarray:
        p = self.prepare_grad_filter(x, dy, spec)  # type: ignore[attr-defined]
        return p.fetch(p.call())  # type: ignore[no-any-return]

    def transpose(self, y: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
        p = self.prepare_transpose(y, w, spec)  # type: ignore[attr-defined]
        return p.fetch(p.call())  # type: ignore[no-any-return]
