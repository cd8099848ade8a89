"""The adapter registry: names, variants, availability without importing frameworks, and its errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

import adapters
from adapters import AdapterError, AdapterRef, parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = ("tensorflow", "torch", "jax", "onnxruntime", "onnx", "keras", "scipy")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tf", AdapterRef("tf")),
        ("tf:onednn=off", AdapterRef("tf", {"onednn": "off"})),
        ("torch:threads=1:layout=channels_last", AdapterRef("torch", {"threads": "1", "layout": "channels_last"})),
        ("jax-gpu:precision=highest", AdapterRef("jax-gpu", {"precision": "highest"})),
        ("pkg.mod:Cls:opt=1", AdapterRef("pkg.mod:Cls", {"opt": "1"})),
    ],
)
def test_parse(text: str, expected: AdapterRef) -> None:
    assert parse(text) == expected


def test_label_sorts_options() -> None:
    assert parse("torch:threads=1:layout=channels_last").label == "torch:layout=channels_last:threads=1"


@pytest.mark.parametrize("text", ["", "  ", "tf:=off", "tf:onednn=off:fast"])
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(AdapterError):
        parse(text)


def test_unknown_adapter_lists_every_choice() -> None:
    with pytest.raises(AdapterError) as info:
        adapters.unavailable_reason("tensorflw")
    message = str(info.value)
    assert "unknown adapter 'tensorflw'" in message
    for name in ("jax", "onnxruntime", "onnx-ref", "scipy", "keras", "torch-nn", "torch-cuda", "jax-gpu"):
        assert name in message


def test_every_builtin_is_known_and_default_is_a_subset() -> None:
    known = adapters.known()
    assert set(adapters.BUILTINS) <= set(known)
    assert set(adapters.DEFAULT) == set(adapters.CPU) | set(adapters.GPU) and set(adapters.DEFAULT) <= set(known)
    assert not set(adapters.CPU) & set(adapters.GPU)


def test_builtin_targets_resolve_to_classes() -> None:
    """Every module:Class names a class, found without importing a framework (modules import them lazily)."""
    import importlib

    for name, (target, _) in adapters.BUILTINS.items():
        module_name, _, class_name = target.partition(":")
        assert isinstance(getattr(importlib.import_module(module_name), class_name), type), name


def test_gpu_adapters_say_why_without_a_cuda_device() -> None:
    if any(os.path.exists(f"/dev/nvidia{i}") for i in range(8)):
        pytest.skip("this machine has a CUDA device")
    for name in adapters.GPU:
        framework = adapters.BUILTINS[name][1][0]
        # without the framework the reason names the missing package; with it, the missing CUDA device
        expected = "not installed" if importlib.util.find_spec(framework) is None else "CUDA"
        reason = adapters.unavailable_reason(name)
        assert reason is not None and expected in reason, (name, reason)


def test_availability_check_imports_no_framework() -> None:
    """unavailable_reason for every adapter, in a fresh interpreter, leaves every framework unimported."""
    code = (
        "import json, sys, adapters\n"
        "reasons = {n: adapters.unavailable_reason(n) for n in adapters.known()}\n"
        f"print(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                          capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    ("label", "module", "words"),
    [
        ("torch:threads=0", "torch", "threads must be a positive integer"),
        ("torch:layout=nhwc", "torch", "layout must be 'channels_last'"),
        ("jax:precision=fast", "jax", "precision must be one of"),
        ("onnxruntime:opt=max", "onnxruntime", "opt must be one of"),
        ("tf:onednn=maybe", "tensorflow", "onednn must be 'on' or 'off'"),
        ("tf:isa=avx9", "tensorflow", "tf option isa: unknown oneDNN ISA level 'avx9'; known: sse41"),
        ("torch:isa=avx9", "torch", "torch option isa: unknown oneDNN ISA level 'avx9'"),
        ("keras:isa=avx9:onednn=on", "keras", "keras option isa: unknown oneDNN ISA level"),
        ("scipy:threads=2", "scipy", "rejected options"),
    ],
)
def test_bad_variant_option_is_one_line_error(label: str, module: str, words: str) -> None:
    pytest.importorskip(module, reason=f"{module} is not installed")
    with pytest.raises(AdapterError, match=words):
        adapters.load(label)


def test_class_hook_overrides_module_hook(tmp_path, monkeypatch) -> None:
    """A class-level unavailable_reason answers for that class alone (one module, CPU and GPU classes)."""
    (tmp_path / "two_engines.py").write_text(
        "class Cpu:\n    pass\n"
        "class Gpu:\n    @staticmethod\n    def unavailable_reason(options):\n        return 'no CUDA device'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(adapters.BUILTINS, "two-cpu", ("two_engines:Cpu", ()))
    monkeypatch.setitem(adapters.BUILTINS, "two-gpu", ("two_engines:Gpu", ()))
    assert adapters.unavailable_reason("two-cpu") is None
    assert adapters.unavailable_reason("two-gpu") == "no CUDA device"


def test_missing_framework_names_the_extra_to_install(monkeypatch) -> None:
    monkeypatch.setitem(adapters.BUILTINS, "onnx-ref", ("adapters.onnx_ref:OnnxRefAdapter", ("no_such_framework_x",)))
    reason = adapters.unavailable_reason("onnx-ref")
    assert reason == "no_such_framework_x is not installed (pip install 'refconv[onnx]')"
