"""Adapters that misbehave on purpose, to prove the runner survives them (named `fake_adapters:Faulty:...`).

`Faulty` computes the right answer (the numpy adapter) except on the cases its `on` option selects, where
it does what `mode` says: abort (SIGABRT, like a framework CHECK failure), exit (os._exit(3)), segv (a
real NULL read), hang, slow (sleep `delay` seconds, then answer), shape (drop the last output row),
wrong (add 1 to one element), raise (ValueError), poison (answer right, but every later case in the same
process segfaults: a case that corrupts the process, so that the crash shows on an innocent case), die_after
(answer right, then segfault `delay` seconds later, from another thread: a process that dies between cases).
`on`: all | odd (cases with odd input height) | even | n<id-prefix> (cases whose id starts with it).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from typing import Any

import numpy as np

from adapters.base import Prepared
from adapters.numpy_ref import NumpyAdapter
from refconv.spec import ConvSpec

MODES = ("abort", "exit", "segv", "hang", "slow", "shape", "wrong", "raise", "poison", "die_after")


class Faulty(NumpyAdapter):
    """The numpy adapter, misbehaving on selected cases."""

    def __init__(self, mode: str = "raise", on: str = "all", delay: str = "0.2") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.on, self.delay = mode, on, float(delay)
        self.name = f"fake:{mode}"

    def version(self) -> str:
        return "0-fake"

    def selected(self, spec: ConvSpec) -> bool:
        if self.on == "all":
            return True
        if self.on in ("odd", "even"):
            return spec.h % 2 == (1 if self.on == "odd" else 0)
        return spec.id.startswith(self.on)

    poisoned = False  # set by a "poison" case: this process then dies on every later case

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        prepared = super().prepare(x, w, b, spec)
        if Faulty.poisoned:
            ctypes.string_at(0)
        if not self.selected(spec):
            return prepared
        if self.mode == "poison":
            Faulty.poisoned = True
            return prepared
        if self.mode == "die_after":
            threading.Thread(target=lambda: (time.sleep(self.delay), ctypes.string_at(0)), daemon=True).start()
            return prepared
        self.misbehave_now()
        if self.mode == "shape":
            return Prepared(prepared.call, lambda out: prepared.fetch(out)[:, :-1])
        if self.mode == "wrong":
            return Prepared(prepared.call, lambda out: _plus_one(prepared.fetch(out)))
        return prepared

    def misbehave_now(self) -> None:
        if self.mode == "abort":
            os.abort()
        elif self.mode == "exit":
            os._exit(3)
        elif self.mode == "segv":
            ctypes.string_at(0)  # a genuine NULL dereference: SIGSEGV
        elif self.mode == "hang":
            time.sleep(3600)
        elif self.mode == "slow":
            time.sleep(self.delay)
        elif self.mode == "raise":
            raise ValueError("fake adapter refuses this case on purpose")


def _plus_one(out: Any) -> np.ndarray:
    out = np.array(out)
    if out.size:
        out.flat[0] += 1
    return out


class Plain:
    """A minimal adapter without prepare(): only the four protocol members (conv2d is timed whole)."""

    name = "plain"

    def version(self) -> str:
        return "1.0"

    def supports(self, spec: ConvSpec) -> str | None:
        return "plain adapter declines NCHW" if spec.layout == "NCHW" else None

    def conv2d(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
        return NumpyAdapter().conv2d(x, w, b, spec)


class Noisy(NumpyAdapter):
    """The numpy adapter, talkative: prints to stdout and stderr once, and warns on every call (a quiet terminal)."""

    name = "noisy"

    def __init__(self) -> None:
        import sys

        print("fake adapter says hello on stdout")
        print("fake adapter says hello on stderr", file=sys.stderr)

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        import warnings

        prepared = super().prepare(x, w, b, spec)

        def call() -> Any:
            warnings.warn("fake adapter warns on every call", UserWarning, stacklevel=1)
            return prepared.call()

        return Prepared(call, prepared.fetch)
