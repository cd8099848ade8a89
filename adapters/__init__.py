"""The adapter registry: built-in names, `package.module:Class` paths and `refconv.adapters` entry points.

Nothing here imports a framework: availability is judged by `importlib.util.find_spec`, and an
adapter module imports its framework only when the adapter is constructed (in a worker process).

>>> parse("tf:onednn=off")
AdapterRef(name='tf', options={'onednn': 'off'}, version='')
>>> parse("tf@2.19.1:onednn=off").label  # a pinned engine version runs on its own environment (refconv.envs)
'tf@2.19.1:onednn=off'
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from refconv.errors import RefconvError, SpecError

# name -> (module:Class, the import names it needs)
BUILTINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "numpy": ("adapters.numpy_ref:NumpyAdapter", ()),
    "tf": ("adapters.tensorflow:TFAdapter", ("tensorflow",)),
    "torch": ("adapters.torch:TorchAdapter", ("torch",)),
    "torch-nn": ("adapters.torch_nn:TorchNNAdapter", ("torch",)),
    "jax": ("adapters.jax:JaxAdapter", ("jax",)),
    "onnxruntime": ("adapters.onnxruntime:OrtAdapter", ("onnx", "onnxruntime")),
    "onnx-ref": ("adapters.onnx_ref:OnnxRefAdapter", ("onnx",)),
    "scipy": ("adapters.scipy_ref:ScipyAdapter", ("scipy",)),
    "keras": ("adapters.keras:KerasAdapter", ("keras", "tensorflow")),
    "torch-cuda": ("adapters.torch:TorchCudaAdapter", ("torch",)),
    "jax-gpu": ("adapters.jax:JaxGpuAdapter", ("jax",)),
}
# The pyproject extra that installs an adapter's framework (keras arrives with tensorflow-cpu).
EXTRAS = {"torch-nn": "torch", "torch-cuda": "torch", "jax-gpu": "jax", "onnxruntime": "onnx", "onnx-ref": "onnx",
          "keras": "tf"}
CPU = ("numpy", "tf", "torch", "torch-nn", "jax", "onnxruntime", "onnx-ref", "scipy", "keras")
GPU = ("torch-cuda", "jax-gpu")
# A default run holds every engine; those unavailable here (no framework, no CUDA) are skipped with the reason,
# so the GPU adapters appear on their own where CUDA is.
DEFAULT = CPU + GPU


class AdapterError(RefconvError):
    """An adapter name that cannot be resolved; the message lists the choices."""


@dataclass(frozen=True)
class AdapterRef:
    """An adapter by name with its variant options, e.g. tf:onednn=off."""

    name: str
    options: dict[str, str] = field(default_factory=dict)
    version: str = ""  # a pinned engine version (tf@2.19.1): refconv.envs builds its environment

    @property
    def label(self) -> str:
        pin = f"@{self.version}" if self.version else ""
        return self.name + pin + "".join(f":{k}={v}" for k, v in sorted(self.options.items()))

    def __hash__(self) -> int:
        return hash(self.label)


def parse(text: str) -> AdapterRef:
    """'name[@version]' or 'name[@version]:key=value[:key=value]'; a 'package.module:Class' path is a name."""
    text = text.strip()
    if not text:
        raise AdapterError("adapter name is empty")
    head, *rest = text.split(":")
    if rest and "=" not in rest[0]:  # package.module:Class
        head, rest = f"{head}:{rest[0]}", rest[1:]
    head, pinned, version = head.partition("@")
    if pinned and not version:
        raise AdapterError(f"adapter version is empty in {text!r} (e.g. tf@2.19.1)")
    options = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AdapterError(f"adapter option must be key=value, got {item!r} in {text!r}")
        options[key] = value
    return AdapterRef(head, options, version)


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="refconv.adapters")}


def known() -> dict[str, str]:
    """Every adapter name refconv knows, mapped to its module:Class path."""
    names = {name: target for name, (target, _) in BUILTINS.items()}
    for name, target in _entry_points().items():
        names.setdefault(name, target)
    return names


def _target(name: str) -> str:
    if ":" in name:
        return name
    names = known()
    if name not in names:
        raise AdapterError(f"unknown adapter {name!r}; available: {', '.join(sorted(names))}")
    return names[name]


def unavailable_reason(ref: AdapterRef | str) -> str | None:
    """Why an adapter cannot run here (a missing framework or module), without importing a framework."""
    ref = parse(ref) if isinstance(ref, str) else ref
    target = _target(ref.name)
    if ref.version and _pin_reason(ref) != "local":
        return _pin_reason(ref)
    requires = BUILTINS[ref.name][1] if ref.name in BUILTINS else ()
    for module in requires:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'refconv[{EXTRAS.get(ref.name, ref.name)}]')"
    module_name = target.partition(":")[0]
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return f"module {module_name!r} cannot be found"
    return _module_reason(target, ref)


def _pin_reason(ref: AdapterRef) -> str | None:
    """'local' when this environment has the pinned version; else why it cannot be built (None: it can)."""
    from refconv import envs

    try:
        envs.check_pin(ref.name, ref.version)
    except envs.EnvError as exc:
        return str(exc)
    return "local" if not envs.needs_env(ref.label) else None


def _module_reason(target: str, ref: AdapterRef) -> str | None:
    """Finer checks (a GPU, say) without importing a framework.

    An adapter class may define a static `unavailable_reason(options)`; otherwise its module may.
    The class hook lets one module hold a CPU and a GPU adapter with different answers.
    """
    if ":" in ref.name:
        return None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    check = getattr(getattr(module, class_name, None), "unavailable_reason", None)
    if check is None:
        check = getattr(module, "unavailable_reason", None)
    return check(ref.options) if check else None


def load(ref: AdapterRef | str) -> Any:
    """Import and construct an adapter; frameworks are imported here, so call it in a worker.

    A pinned version is the worker's environment's business (refconv.remote runs it on the right one).
    """
    ref = parse(ref) if isinstance(ref, str) else ref
    target = _target(ref.name)
    module_name, _, class_name = target.partition(":")
    if not class_name:
        raise AdapterError(f"adapter path must be 'package.module:Class', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterError(f"cannot import adapter module {module_name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise AdapterError(f"module {module_name!r} has no adapter class {class_name!r}")
    try:
        adapter = cls(**ref.options)
    except TypeError as exc:
        raise AdapterError(f"adapter {ref.name!r} rejected options {ref.options}: {exc}") from None
    except SpecError as exc:
        raise AdapterError(str(exc)) from None
    return adapter
