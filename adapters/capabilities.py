"""What each adapter can express, found by probing its `supports()` on representative specs.

Nothing here is written by hand per engine: `probe(adapter)` asks the adapter itself. `describe(label)`
loads one adapter and must run in a process of its own (it imports the framework); `refconv adapters`
calls it through a spawn process pool so the main process never imports a framework.
`no_cuda_reason` judges GPU availability without importing a framework or touching CUDA.

>>> sorted(CAPABILITIES)[:3]
['bfloat16', 'channels_last', 'depthwise']
"""

from __future__ import annotations

import glob
import importlib.metadata
import shutil
import traceback
from typing import Any

from refconv.spec import ConvSpec

_BASE = ConvSpec(n=1, h=6, w=6, c_in=4, c_out=4, kh=3, kw=3)

# capability -> a small spec that needs it and nothing else unusual
CAPABILITIES: dict[str, ConvSpec] = {
    "float32": _BASE,
    "float64": _BASE.replace(dtype="float64"),
    "float16": _BASE.replace(dtype="float16"),
    "bfloat16": _BASE.replace(dtype="bfloat16"),
    "NCHW": _BASE.replace(layout="NCHW"),
    "channels_last": _BASE.replace(layout="channels_last"),
    "stride": _BASE.replace(strides=(2, 1)),
    "dilation": _BASE.replace(dilations=(2, 1), padding="VALID"),
    "dilation+same": _BASE.replace(dilations=(2, 1)),
    "dilation+stride": _BASE.replace(dilations=(2, 2), strides=(2, 2), padding="VALID"),
    "groups": _BASE.replace(groups=2),
    "depthwise": _BASE.replace(groups=4, c_out=8),
    "explicit_pads": _BASE.replace(padding=((2, 0), (1, 0))),
    "relu": _BASE.replace(activation="relu"),
    "no_bias": _BASE.replace(bias=False),
    "empty_output": _BASE.replace(h=2, w=2, padding="VALID"),
}


def probe(adapter: Any) -> dict[str, str | None]:
    """capability -> None where `adapter.supports` accepts its representative spec, else the reason."""
    return {name: adapter.supports(spec) for name, spec in CAPABILITIES.items()}


def describe(label: str) -> dict[str, Any]:
    """Availability, version, kernels (isa), CPU, settings and capabilities of one adapter, in its own process."""
    import adapters
    from refconv.hardware import cpu_features
    from refconv.serve import case_isa

    out: dict[str, Any] = {"adapter": label, "available": False, "reason": "", "version": "", "isa": "",
                           "cpu_features": cpu_features(), "settings": {}, "capabilities": {}}
    try:
        reason = adapters.unavailable_reason(label)
        if reason:
            out["reason"] = reason
            return out
        adapter = adapters.load(label)
        out["version"] = adapter.version()
        settings = getattr(adapter, "settings", None)
        out["settings"] = settings() if settings else {}
        out["isa"] = case_isa(adapter, None)  # its general answer; rows carry each case's
        out["capabilities"] = probe(adapter)
        out["available"] = True
    except Exception as exc:  # noqa: BLE001 - a broken engine is reported as a row, not a crash of the listing
        out["reason"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        out["traceback"] = traceback.format_exc()
    return out


def _has_cuda_device() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None


def _distributions() -> set[str]:
    return {(d.metadata["Name"] or "").lower().replace("_", "-") for d in importlib.metadata.distributions()}


def no_cuda_reason(framework: str) -> str | None:
    """Why `framework` cannot run on CUDA here, judged from files and package metadata alone."""
    if not _has_cuda_device():
        return "no CUDA device (no /dev/nvidia* device and no nvidia-smi)"
    if framework == "torch":
        version = importlib.metadata.version("torch")
        if "+cpu" in version:
            return f"torch {version} is a CPU-only build"
    if framework == "jax" and not any(name.startswith("jax-cuda") for name in _distributions()):
        return "no JAX CUDA plugin installed (pip install 'jax[cuda12]')"
    return None
