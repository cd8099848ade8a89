"""Third-party adapters that misbehave on purpose: hostile strings, wrong shapes, wrong dtypes.

HOSTILE holds what an engine's name, version, settings or error message could carry: both quote kinds,
a triple quote that would end a docstring followed by code, newlines and a carriage return, `</script>`,
format braces, a Markdown pipe, an ANSI escape, and bytes that are not UTF-8 (decoded with
surrogateescape, as Python does for such bytes in argv and environment variables).
"""

from __future__ import annotations

import numpy as np

from refconv.reference import conv2d
from refconv.spec import ConvSpec

NOT_UTF8 = b"\xff\xfe\xc3(".decode("utf-8", "surrogateescape")
# PAYLOAD would create the file PWNED in the working directory if it ever ran as code
PWNED = "pwned-by-refconv-test"
PAYLOAD = f'"""; import os # \'\'\'; open("{PWNED}", "w").write("x") #'
HOSTILE = ('q\'uo"te ' + PAYLOAD + ' </script><script>alert(1)</script> {} {0} {name!r} '
           '| pipe\nsecond line\r\nthird \x1b[31mred\x1b[0m \\ back ' + NOT_UTF8)


def _reference(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
    return conv2d(x, w, b, spec.strides, spec.padding, spec.dilations, spec.groups, spec.activation)


class Hostile:
    """Raises with a hostile message; reports a hostile version and settings."""

    name = "hostile" + HOSTILE

    def __init__(self, **options: str) -> None:
        self.options = options

    def version(self) -> str:
        return "1.0" + HOSTILE

    def settings(self) -> dict[str, object]:
        return {"mode" + HOSTILE: HOSTILE, "tag": self.options.get("tag", "")}

    def supports(self, spec: ConvSpec) -> str | None:
        return None

    def conv2d(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
        raise RuntimeError("engine failed: " + HOSTILE)


class HostileWrong(Hostile):
    """Returns a wrong answer (a mismatch row with a repro script) under a hostile version."""

    def conv2d(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
        return (_reference(x, w, b, spec) + 1.0).astype(x.dtype)


class WrongShape:
    """Returns one extra output row."""

    name = "wrong-shape"

    def version(self) -> str:
        return "0"

    def supports(self, spec: ConvSpec) -> str | None:
        return None

    def conv2d(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
        out = _reference(x, w, b, spec)
        return np.concatenate([out, out[:, :1]], axis=1).astype(x.dtype)


class WrongDtype(WrongShape):
    """Right values, returned in float64 whatever the case's dtype."""

    name = "wrong-dtype"

    def conv2d(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
        return _reference(x, w, b, spec)
