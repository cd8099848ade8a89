"""Each adapter's `isa`: the kernels its engine dispatched to, and the `isa=<level>` variants that choose them.

The variants set ONEDNN_MAX_CPU_ISA (and torch's ATEN_CPU_CAPABILITY), which a process reads once: every check
that loads one runs in a subprocess of its own, so this process's frameworks keep their defaults.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

import adapters
from adapters import jax as jax_adapter
from adapters import onnxruntime as ort_adapter
from adapters import tensorflow as tf_adapter
from adapters.torch import conv_geometry
from refconv import hardware
from refconv.commands import run as run_command
from refconv.conformance.plugin import adapter_or_skip
from refconv.serve import case_isa
from refconv.spec import ConvSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS = {m: importlib.util.find_spec(m) is not None for m in ("torch", "tensorflow", "keras")}
needs_torch = pytest.mark.skipif(not HAS["torch"], reason="torch is not installed")
needs_tf = pytest.mark.skipif(not HAS["tensorflow"], reason="tensorflow is not installed")
needs_keras = pytest.mark.skipif(not (HAS["keras"] and HAS["tensorflow"]), reason="keras/tensorflow not installed")

AVX2_ONLY = frozenset({"sse2", "sse4_1", "sse4_2", "ssse3", "cx16", "lahf_lm", "popcnt", "avx", "avx2", "bmi1",
                       "bmi2", "f16c", "fma", "movbe", "abm"})  # a Zen 2/3-like CPU
SKYLAKE_X = AVX2_ONLY | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
SAPPHIRE_RAPIDS = SKYLAKE_X | {"avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8",
                               "amx_bf16"}
BASE = ConvSpec(n=2, h=6, w=6, c_in=4, c_out=4, kh=3, kw=3)  # n=2: torch sends it to oneDNN in float32
ISA_FORMAT = re.compile(r"[a-z0-9_-]+(:[A-Za-z0-9_.]+)?")
# The families each built-in adapter reports (docs/hardware.md).
FAMILIES = {"numpy": {"openblas", "blas"}, "tf": {"onednn", "eigen"}, "keras": {"onednn", "eigen", "xla"},
            "torch": {"onednn", "aten", "empty"}, "torch-nn": {"onednn", "aten", "empty"}, "jax": {"xla"},
            "onnxruntime": {"mlas"}, "onnx-ref": {"numpy"}, "scipy": {"scipy"}}


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict[str, Any]:
    """Run code in a fresh interpreter from the repository root; its last stdout line is JSON."""
    full_env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "ONEDNN_VERBOSE"):
        if name not in (env or {}):
            full_env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=True)
    return {"json": json.loads(done.stdout.strip().splitlines()[-1]), "stdout": done.stdout}


def family(isa: str) -> str:
    return isa.partition(":")[0]


@pytest.mark.parametrize(("text", "level"), [
    ("Intel AVX2 with Intel DL Boost, float16 and bfloat16 support", "avx2_vnni_2"),
    ("Intel AVX2 with Intel DL Boost", "avx2_vnni"),
    ("Intel AVX-512 with Intel DL Boost and bfloat16 support on Ymm/Zmm", "avx512_core_bf16"),
    ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support ", "avx512_core_fp16"),
    ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16, float16 and "
     "8-bit integer support", "avx512_core_amx_fp16"),
    ("Intel AVX10.1 and Intel AMX with bfloat16, float16 and 8-bit integer support", "avx512_core_amx_fp16"),
    ("Intel AVX10.2", ""),  # no refconv level yet: unknown, never a lower level
    ("Intel AVX10.2 and Intel AMX with float8, float16, bfloat16 and 8-bit integer support", ""),
    ("Intel 64", ""),
])
def test_onednn_isa_texts_of_levels_this_cpu_lacks(text: str, level: str) -> None:
    """Texts compiled into libtorch_cpu.so (torch 2.13) and libtensorflow_cc.so.2 (TF 2.21), read with strings."""
    assert hardware.onednn_level_text(text) == level


def test_labels_sort_and_combine_options() -> None:
    assert adapters.parse("tf:onednn=on:isa=avx2").label == "tf:isa=avx2:onednn=on"
    assert adapters.parse("keras:isa=avx2:onednn=on").label == "keras:isa=avx2:onednn=on"
    assert [adapters.parse(t).label for t in run_command.split_labels("tf:onednn=on,isa=avx2,torch:isa=sse41")] == [
        "tf:isa=avx2:onednn=on", "torch:isa=sse41"]
    assert tf_adapter.variant_label("tf", {"onednn": "on", "isa": "avx2"}) == "tf:isa=avx2:onednn=on"
    assert tf_adapter.variant_label("keras", {"onednn": None, "isa": None}) == "keras"


@pytest.mark.parametrize("name", [pytest.param("torch", marks=needs_torch), pytest.param("torch-nn", marks=needs_torch),
                                  pytest.param("tf", marks=needs_tf), pytest.param("keras", marks=needs_keras)])
def test_a_level_this_cpu_lacks_is_refused_in_one_line(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: SAPPHIRE_RAPIDS)  # no amx_fp16
    before = {k: os.environ.get(k) for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "TF_ENABLE_ONEDNN_OPTS")}
    reason = adapters.unavailable_reason(f"{name}:isa=avx512_core_amx_fp16")
    assert reason and "lacks amx_fp16" in reason and "\n" not in reason
    with pytest.raises(adapters.AdapterError, match=f"^{name}:isa=avx512_core_amx_fp16: this CPU cannot run it"):
        adapters.load(f"{name}:isa=avx512_core_amx_fp16:onednn=on" if name in ("tf", "keras") else
                      f"{name}:isa=avx512_core_amx_fp16")
    # refused before anything is set (and before the framework's import)
    assert {k: os.environ.get(k) for k in before} == before


@needs_torch
def test_a_level_above_a_fake_avx2_cpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: AVX2_ONLY)
    reason = adapters.unavailable_reason("torch:isa=avx512_core")
    assert reason and "lacks avx512f" in reason and "oneDNN levels sse41, avx, avx2" in reason
    assert adapters.unavailable_reason("torch:isa=avx2") is None
    assert "unknown oneDNN ISA level 'avx9'" in (adapters.unavailable_reason("torch:isa=avx9") or "")


@needs_keras
def test_tf_isa_needs_onednn_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where TensorFlow's default is oneDNN off (an AVX2 CPU), a cap alone is refused: it would cap nothing."""
    monkeypatch.setattr(tf_adapter, "onednn_in_force", lambda: None)  # TensorFlow not imported
    monkeypatch.setattr(hardware, "tf_onednn_expected", lambda env=None, flags=None: False)
    assert adapters.unavailable_reason("tf:isa=avx2") == "isa=avx2: isa caps oneDNN, which is off here; add onednn=on"
    assert adapters.unavailable_reason("keras:isa=avx2") is not None
    assert adapters.unavailable_reason("tf:isa=avx2:onednn=on") is None
    monkeypatch.setattr(hardware, "tf_onednn_expected", lambda env=None, flags=None: True)
    assert adapters.unavailable_reason("tf:isa=avx2") is None
    assert "add onednn=on" in (adapters.unavailable_reason("tf:isa=avx2:onednn=off") or "")
    with pytest.raises(adapters.AdapterError, match="^tf:isa=avx2: isa caps oneDNN, which is off here"):
        adapters.load("tf:isa=avx2:onednn=off")


@pytest.mark.parametrize(("flags", "dtypes"), [
    (AVX2_ONLY, ("float32",)),
    (SKYLAKE_X, ("float32", "bfloat16")),
    (SAPPHIRE_RAPIDS, ("float32", "bfloat16", "float16")),
    (AVX2_ONLY | {"avx_ne_convert"}, ("float32", "bfloat16", "float16")),
])
def test_tf_hands_dtypes_to_onednn_by_cpu(flags: frozenset[str], dtypes: tuple[str, ...]) -> None:
    assert tf_adapter.onednn_dtypes(flags) == dtypes


def test_tf_kernels_per_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tf_adapter, "onednn_in_force", lambda: True)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: SKYLAKE_X)
    level = "avx512_core"
    assert tf_adapter.kernels(None, level) == "onednn:avx512_core"
    assert tf_adapter.kernels(BASE, level) == "onednn:avx512_core"
    assert tf_adapter.kernels(BASE.replace(dtype="float64"), level) == "eigen"
    assert tf_adapter.kernels(BASE.replace(dtype="float16"), level) == "eigen"  # no AVX512-FP16 on Skylake-X
    explicit = BASE.replace(padding=((1, 0), (2, 1)))
    assert tf_adapter.kernels(explicit, level) == "onednn:avx512_core"  # Conv2D: always rewritten
    assert tf_adapter.kernels(explicit.replace(op="grad_input"), level) == "eigen"  # backprop: not with EXPLICIT
    assert tf_adapter.kernels(explicit.replace(op="transpose"), level, explicit_op=False) == "onednn:avx512_core"
    monkeypatch.setattr(tf_adapter, "onednn_in_force", lambda: False)
    assert tf_adapter.kernels(BASE, level) == tf_adapter.kernels(None, level) == "eigen"


def test_xla_and_mlas_levels_follow_the_cpu_and_the_cap() -> None:
    assert jax_adapter.xla_level({}, SAPPHIRE_RAPIDS) == "avx512"
    assert jax_adapter.xla_level({}, AVX2_ONLY) == "avx2"
    assert jax_adapter.xla_level({"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}, SAPPHIRE_RAPIDS) == "avx2"
    assert jax_adapter.xla_level({"XLA_FLAGS": "--foo --xla_cpu_max_isa=AMX"}, AVX2_ONLY) == "avx2"  # never up
    assert jax_adapter.xla_level({}, {"asimd", "sve"}) == ""
    assert ort_adapter.mlas_level(SAPPHIRE_RAPIDS) == "avx512f"
    assert ort_adapter.mlas_level(AVX2_ONLY) == "avx2"
    assert ort_adapter.mlas_level(AVX2_ONLY - {"fma"}) == "avx"
    assert ort_adapter.mlas_level({"sse2", "sse4_1"}) == "sse"


def test_torch_geometry_is_what_its_convolution_receives() -> None:
    same = BASE.replace(kh=2, kw=4)  # SAME, stride 1: torch pads the odd pixel itself, then symmetrically
    assert conv_geometry(same)["input"] == (2, 4, 7, 7) and conv_geometry(same)["padding"] == [0, 1]
    asymmetric = BASE.replace(padding=((2, 0), (1, 1)))  # F.pad first, then VALID
    assert conv_geometry(asymmetric)["input"] == (2, 4, 8, 8) and conv_geometry(asymmetric)["padding"] == [0, 0]
    transpose = BASE.replace(op="transpose", c_out=6)
    geometry = conv_geometry(transpose)
    assert geometry["transposed"] and geometry["input"] == (2, 6, 6, 6) and geometry["weight"] == (6, 4, 3, 3)


@pytest.mark.parametrize("label", list(FAMILIES))
def test_each_adapter_reports_its_documented_family(label: str) -> None:
    adapter = adapter_or_skip(label)
    general = case_isa(adapter, None)
    assert ISA_FORMAT.fullmatch(general) and family(general) in FAMILIES[label], general
    for spec in (BASE, BASE.replace(dtype="float64"), BASE.replace(n=1, op="grad_input")):
        if adapter.supports(spec) is None:
            isa = case_isa(adapter, spec)
            assert ISA_FORMAT.fullmatch(isa) and family(isa) in FAMILIES[label], (spec.id, isa)
            if family(isa) == "onednn":
                assert isa.partition(":")[2] in hardware.ONEDNN_LEVELS, isa


@needs_torch
@pytest.mark.parametrize("label", ["torch", "torch-nn"])
def test_torch_names_the_backend_it_picks(label: str) -> None:
    adapter = adapter_or_skip(label)
    settings, aten = adapter.settings(), f"aten:{adapter.torch.backends.cpu.get_cpu_capability().lower()}"
    assert adapter.isa(BASE.replace(dtype="float64")) == aten  # no oneDNN float64 convolution
    assert adapter.isa(BASE.replace(n=1, h=3, w=3, c_in=1, c_out=1)) == aten  # too small for oneDNN
    if settings["onednn_isa_source"].startswith("oneDNN's verbose header"):
        assert hardware.onednn_level_text(settings["onednn_isa_text"]) == settings["onednn_isa"]
    for op in ("conv2d", "grad_input", "grad_filter", "transpose"):
        assert adapter.isa(BASE.replace(op=op)) == hardware.onednn_isa(settings["onednn_isa"]), op
    assert adapter.isa(BASE.replace(h=2, w=2, padding="VALID")) == "aten"  # torch's checks raise: no backend


@needs_torch
def test_torch_mkldnn_off_reports_aten() -> None:
    adapter = adapter_or_skip("torch:mkldnn=off")
    assert family(adapter.isa(BASE)) == family(adapter.isa(None)) == "aten"
    assert family(adapter_or_skip("torch").isa(BASE)) == "onednn"  # each adapter applies its own setting


TORCH_CAPPED = """
import json, os, sys, tempfile, ctypes
import adapters
from refconv import ops
from refconv.spec import ConvSpec
a = adapters.load("torch:isa=avx2")
spec = ConvSpec(n=2, h=6, w=6, c_in=4, c_out=4, kh=3, kw=3)
torch = a.torch
saved = os.dup(1)
with tempfile.TemporaryFile() as out:
    sys.stdout.flush(); os.dup2(out.fileno(), 1)
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        a.conv2d(*ops.inputs(spec), spec)
    ctypes.CDLL(None).fflush(None); os.dup2(saved, 1)
    out.seek(0); lines = [l for l in out.read().decode().splitlines() if ",exec,cpu,convolution," in l]
try:
    adapters.load("torch:isa=sse41")
    refused = ""
except adapters.AdapterError as exc:
    refused = str(exc)
print(json.dumps({"name": a.name, "isa": a.isa(spec), "float64": a.isa(spec.replace(dtype="float64")),
                  "settings": a.settings(), "impl": [l.split(",")[6] for l in lines], "refused": refused}))
"""


@needs_torch
@pytest.mark.skipif("avx2" not in hardware.onednn_levels(), reason="this CPU has no AVX2")
def test_torch_isa_avx2_runs_onednn_at_avx2() -> None:
    """oneDNN itself says AVX2 (its verbose header), its convolution runs an avx2 kernel, ATen follows the cap."""
    out = run_python(TORCH_CAPPED)["json"]
    assert out["name"] == "torch:isa=avx2"
    assert out["isa"] == "onednn:avx2" and out["float64"] == "aten:avx2"
    settings = out["settings"]
    assert settings["onednn_isa_text"] == "Intel AVX2" and settings["onednn_isa_source"].startswith("oneDNN's")
    assert settings["ONEDNN_MAX_CPU_ISA"] == "AVX2" and settings["aten_cpu_capability"] == "avx2"
    assert out["impl"] and all(impl.endswith(":avx2") for impl in out["impl"]), out["impl"]
    # oneDNN read its cap once: a second cap in the same process (--no-isolation) would label rows falsely
    assert out["refused"].startswith("torch:isa=sse41 cannot take effect: torch is already imported"), out["refused"]


TF_HEADER = """
import json, sys
import adapters
from refconv import ops
from refconv.spec import ConvSpec
a = adapters.load(sys.argv[1] if len(sys.argv) > 1 else {label!r})
spec = ConvSpec(n=2, h=6, w=6, c_in=4, c_out=4, kh=3, kw=3)
a.conv2d(*ops.inputs(spec), spec)
sys.stdout.flush()
try:
    adapters.load("tf:isa=sse41:onednn=on")
    refused = ""
except adapters.AdapterError as exc:
    refused = str(exc)
print(json.dumps({{"isa": a.isa(spec), "name": a.name, "refused": refused}}))
"""


def tf_labels() -> list[str]:
    """The default (oneDNN on) and up to three caps this CPU runs."""
    caps = [level for level in ("avx2", "avx512_core", "sse41") if level in hardware.onednn_levels()]
    return ["tf:onednn=on"] + [f"tf:isa={level}:onednn=on" for level in caps]


@needs_tf
@pytest.mark.slow  # one TensorFlow import per label: about 8 s each on a busy 2-core machine
@pytest.mark.parametrize("label", tf_labels())
def test_tf_level_matches_tensorflows_own_onednn_header(label: str) -> None:
    """The derived level (oneDNN's rule) is the level TensorFlow's oneDNN prints in its verbose header."""
    out = run_python(TF_HEADER.format(label=label), env={"ONEDNN_VERBOSE": "dispatch"})
    header = [line for line in out["stdout"].splitlines() if ",info,cpu,isa:" in line]
    assert header, out["stdout"][-2000:]
    printed = hardware.onednn_level_text(header[0].partition(",info,cpu,isa:")[2])
    assert out["json"]["name"] == label
    assert out["json"]["isa"] == f"onednn:{printed}", (header[0], out["json"])
    if printed != "sse41":  # oneDNN read its cap once: another in the same process (--no-isolation) is refused
        assert out["json"]["refused"].startswith("tf:isa=sse41 cannot take effect: TensorFlow is already imported")


TF_OFF = """
import json
import adapters
from refconv.spec import ConvSpec
nchw = ConvSpec(n=2, h=6, w=6, c_in=4, c_out=4, kh=3, kw=3, layout="NCHW")
a = adapters.load({label!r})
out = {{"name": a.name, "isa": a.isa(nchw), "general": a.isa(None), "nchw": a.supports(nchw),
        "settings": a.settings()}}
if a.name.startswith("keras"):
    out["grouped_nchw"] = a.supports(nchw.replace(groups=2))
    out["grouped_isa"] = a.isa(nchw.replace(groups=2))
for other in ("tf:onednn=on", "tf:isa=avx2"):
    try:
        adapters.load(other)
        out[other] = ""
    except adapters.AdapterError as exc:
        out[other] = str(exc)
print(json.dumps(out))
"""


@needs_tf
@pytest.mark.slow  # imports TensorFlow in a fresh interpreter
def test_tf_onednn_off_declines_nchw_and_reports_eigen() -> None:
    out = run_python(TF_OFF.format(label="tf:onednn=off"))["json"]
    assert out["name"] == "tf:onednn=off" and out["isa"] == out["general"] == "eigen"
    assert "supports NCHW only through oneDNN, which is off" in out["nchw"]
    assert out["settings"]["onednn_isa"] == "(oneDNN off)"
    assert out["tf:onednn=on"].startswith("tf:onednn=on cannot take effect")
    assert out["tf:isa=avx2"] == "tf:isa=avx2: isa caps oneDNN, which is off here; add onednn=on"


@needs_keras
@pytest.mark.slow  # imports TensorFlow in a fresh interpreter
def test_plain_tf_and_keras_on_a_simulated_avx2_machine() -> None:
    """TF_ENABLE_ONEDNN_OPTS=0 and ONEDNN_MAX_CPU_ISA=AVX2: what TensorFlow's default is on an AVX2-only CPU."""
    env = {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    tf_out = run_python(TF_OFF.format(label="tf"), env=env)["json"]
    assert tf_out["isa"] == "eigen" and "which is off in this TensorFlow" in tf_out["nchw"]
    assert "isa caps oneDNN, which is off here" in tf_out["tf:isa=avx2"]  # TF was imported with it off
    keras_out = run_python(TF_OFF.format(label="keras"), env=env)["json"]
    assert keras_out["isa"] == "eigen" and "channels_first" in keras_out["nchw"]
    assert keras_out["grouped_nchw"] is None and family(keras_out["grouped_isa"]) == "xla"  # Keras compiles it
