"""The CPU and the kernels: what this machine offers, and the names refconv gives the kernels that ran.

Two row columns come from here (docs/hardware.md):
- `cpu_features`: the CPU's x86-64 level and the flags that select kernels, e.g.
  "x86-64-v4 avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx" (on ARM: "aarch64 asimd sve ...");
- `isa`: the kernels an engine dispatched to on a case, "<family>:<level>" or a family alone, as the adapter
  reports it (its `isa(spec)`): "onednn:avx512_core_amx", "eigen", "aten:avx2", "mlas:avx512f", "xla:avx2" ...

oneDNN (inside TensorFlow and PyTorch) JIT-compiles for the highest ISA level the CPU offers, capped by
ONEDNN_MAX_CPU_ISA, which it reads once; capping works only downward. TensorFlow turns oneDNN on by default
only on CPUs with AVX-512 VNNI or BF16, AVX-VNNI or AMX (tensorflow/core/util/port.cc, DefaultOneDnnPolicy),
unless TF_ENABLE_ONEDNN_OPTS says otherwise. Nothing here imports a framework.

>>> onednn_level_text("Intel AVX2 with Intel DL Boost")
'avx2_vnni'
>>> facts("onednn:avx2", "x86-64-v3 avx2")["onednn_isa"]
'avx2'
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from refconv.errors import SpecError

# oneDNN's ISA levels in its documented order (docs: dispatcher control), each with the /proc/cpuinfo flags it
# needs beyond the level before it on its branch. The AVX2-VNNI branch sits beside the AVX-512 one.
ONEDNN_LEVELS: dict[str, tuple[str, ...]] = {
    "sse41": ("sse4_1",),
    "avx": ("sse4_1", "avx"),
    "avx2": ("sse4_1", "avx", "avx2"),
    "avx2_vnni": ("sse4_1", "avx", "avx2", "avx_vnni"),
    "avx2_vnni_2": ("sse4_1", "avx", "avx2", "avx_vnni", "avx_vnni_int8", "avx_ne_convert"),
    "avx512_core": ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"),
    "avx512_core_vnni": ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"),
    "avx512_core_bf16": ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16"),
    "avx512_core_fp16": ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
                         "avx512_fp16"),
    "avx512_core_amx": ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
                        "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"),
    "avx512_core_amx_fp16": ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
                             "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16"),
}
# Names oneDNN also accepts for a level (its AVX10.1 aliases).
ONEDNN_ALIASES = {"avx10_1_512": "avx512_core_fp16", "avx10_1_512_amx": "avx512_core_amx",
                  "avx10_1_512_amx_fp16": "avx512_core_amx_fp16"}
# The ATen (PyTorch's own vectorised kernels) capability a oneDNN level corresponds to (ATEN_CPU_CAPABILITY).
ATEN_FOR_LEVEL = {"sse41": "default", "avx": "default", "avx2": "avx2", "avx2_vnni": "avx2", "avx2_vnni_2": "avx2"}

# CPU flags that select kernels in the engines refconv runs (oneDNN, MLAS, XLA, OpenBLAS), in row order.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx")
ARM_KERNEL_FLAGS = ("asimd", "asimdhp", "asimddp", "sve", "sve2", "bf16", "i8mm", "sme")
_X86_LEVELS = (  # the psABI's x86-64 micro-architecture levels, by /proc/cpuinfo flags
    ("x86-64-v2", ("cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3")),
    ("x86-64-v3", ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "abm")),
    ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
)
# Hardware facts a known deviation's `when` may use (besides the row columns isa and cpu_features).
HARDWARE_FACTS = ("kernels", "onednn_isa", "x86_level") + tuple(f"cpu_{flag}" for flag in KERNEL_FLAGS)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The flags of this machine's CPU (/proc/cpuinfo's `flags`, or `Features` on ARM); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def x86_level(flags: frozenset[str] | set[str]) -> str:
    """'x86-64-v4' ... 'x86-64' for an x86 CPU's flags ('' when they are not x86 flags)."""
    if "sse2" not in flags and "sse4_1" not in flags:
        return ""
    level = "x86-64"
    for name, needed in _X86_LEVELS:
        if not all(flag in flags for flag in needed):
            break
        level = name
    return level


def describe_features(flags: frozenset[str] | set[str], machine: str = "") -> str:
    """The `cpu_features` text: level, then the kernel-selecting flags present (amx for amx_tile)."""
    level = x86_level(flags)
    if level:
        present = [f for f in KERNEL_FLAGS if (f in flags if f != "amx" else "amx_tile" in flags)]
        return " ".join([level, *present])
    present = [f for f in ARM_KERNEL_FLAGS if f in flags]
    return " ".join([machine or platform.machine(), *present]).strip()


@functools.cache
def cpu_features() -> str:
    """This machine's `cpu_features` text (see describe_features)."""
    return describe_features(cpu_flags(), platform.machine())


def onednn_levels(flags: frozenset[str] | set[str] | None = None) -> list[str]:
    """The oneDNN ISA levels a CPU with these flags can run (this machine's by default), lowest first."""
    flags = cpu_flags() if flags is None else flags
    return [level for level, needed in ONEDNN_LEVELS.items() if all(f in flags for f in needed)]


def onednn_level_name(text: str) -> str:
    """A level as the user or ONEDNN_MAX_CPU_ISA writes it ('AVX2', 'avx10_1_512') in refconv's lower-case name."""
    name = text.strip().lower()
    name = ONEDNN_ALIASES.get(name, name)
    if name not in ONEDNN_LEVELS:
        raise SpecError(f"unknown oneDNN ISA level {text!r}; known: {', '.join(ONEDNN_LEVELS)}")
    return name


def check_cap(level: str, flags: frozenset[str] | set[str] | None = None) -> str:
    """The level's name if this CPU can run it; else a SpecError naming what the CPU has (capping goes down only)."""
    name = onednn_level_name(level)
    flags = cpu_flags() if flags is None else flags
    missing = [f for f in ONEDNN_LEVELS[name] if f not in flags]
    if missing:
        have = onednn_levels(flags)
        raise SpecError(f"isa={level}: this CPU cannot run it (it lacks {', '.join(missing)}; capping oneDNN "
                        f"only works downward); this CPU has {describe_features(flags) or 'no known flags'}, "
                        f"oneDNN levels {', '.join(have) or 'none'}")
    return name


def cap_reason(options: Mapping[str, str]) -> str | None:
    """Why an adapter's `isa=<level>` option cannot run on this CPU (None: it can, or there is none)."""
    if "isa" not in options:
        return None
    try:
        check_cap(options["isa"])
    except SpecError as exc:
        return str(exc)
    return None


def onednn_level_in_force(env: Mapping[str, str] | None = None, flags: frozenset[str] | set[str] | None = None) -> str:
    """The level oneDNN dispatches to here: the CPU's highest, capped by ONEDNN_MAX_CPU_ISA ('' if none runs)."""
    if env is None:
        env = os.environ
    levels = onednn_levels(flags)
    if not levels:
        return ""
    cap = env.get("ONEDNN_MAX_CPU_ISA", "") or env.get("DNNL_MAX_CPU_ISA", "")
    if not cap or cap.strip().lower() in ("all", "default"):
        return levels[-1]
    name = onednn_level_name(cap)
    order = list(ONEDNN_LEVELS)
    # a cap on the AVX2-VNNI branch (avx2_vnni) allows avx2 and avx2_vnni, never an AVX-512 level
    allowed = [lv for lv in levels if order.index(lv) <= order.index(name)
               and not (name.startswith("avx2") and lv.startswith("avx512"))]
    return allowed[-1] if allowed else ""


# oneDNN's verbose `isa:` text (its header line) in the words of the versions refconv meets, to a level name.
# Measured: oneDNN 3.7 (TensorFlow 2.21) and the one inside torch 2.13, at every cap this CPU runs; the texts of
# the levels it lacks are those compiled into both libraries (`strings libtorch_cpu.so libtensorflow_cc.so.2`).
# First match wins. AVX10.2 levels have no refconv name yet: '' (unknown), never a lower level.
_ISA_TEXT = (
    ("avx10.2", ""),
    ("amx with bfloat16, float16", "avx512_core_amx_fp16"),
    ("amx", "avx512_core_amx"),
    ("avx10.1", "avx512_core_fp16"), ("avx 10.1", "avx512_core_fp16"),
    ("avx-512 with float16", "avx512_core_fp16"),
    ("avx-512 with intel dl boost and bfloat16", "avx512_core_bf16"),
    ("avx-512 with intel dl boost", "avx512_core_vnni"),
    ("avx-512", "avx512_core"),
    ("avx2 with intel dl boost, float16 and bfloat16", "avx2_vnni_2"),
    ("avx2 with intel dl boost", "avx2_vnni"),
    ("avx2", "avx2"),
    ("sse4.1", "sse41"),
    ("avx", "avx"),
)


def onednn_level_text(text: str) -> str:
    """The level named by oneDNN's verbose `isa:` text ('' when it names none refconv knows)."""
    low = text.lower()
    for words, level in _ISA_TEXT:
        if words in low:
            return level
    return ""


def parse_bool_env(value: str | None) -> bool | None:
    """TensorFlow's ReadBoolFromEnvVar: '0'/'false' off, '1'/'true' on (any case), else None (its default)."""
    if value is None:
        return None
    return {"0": False, "false": False, "1": True, "true": True}.get(value.strip().lower())


def tf_onednn_default(flags: frozenset[str] | set[str] | None = None, machine: str = "") -> bool:
    """Does TensorFlow turn oneDNN on by default on this CPU (its DefaultOneDnnPolicy, Linux x86)?"""
    flags = cpu_flags() if flags is None else flags
    if (machine or platform.machine()) not in ("x86_64", "AMD64"):
        return False  # the ARM rule names one core (Neoverse V1); refconv does not guess it
    return any(f in flags for f in ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"))


def tf_onednn_expected(env: Mapping[str, str] | None = None, flags: frozenset[str] | set[str] | None = None) -> bool:
    """Will a TensorFlow imported with this environment run oneDNN? (The adapter asks TF itself once imported.)"""
    if env is None:
        env = os.environ
    chosen = parse_bool_env(env.get("TF_ENABLE_ONEDNN_OPTS"))
    return tf_onednn_default(flags) if chosen is None else chosen


def onednn_isa(level: str) -> str:
    """The `isa` text of oneDNN kernels at a level: 'onednn:avx2' ('onednn' when the level is unknown)."""
    return f"onednn:{level}" if level else "onednn"


def facts(isa: Any, cpu: Any) -> dict[str, Any]:
    """Hardware facts of a row, for a known deviation's `when`: kernels, onednn_isa, x86_level, cpu_<flag>."""
    isa_text = isa if isinstance(isa, str) else ""
    cpu_text = cpu if isinstance(cpu, str) else ""
    family, _, level = isa_text.partition(":")
    words = cpu_text.split()
    level_word = words[0] if words else ""
    out: dict[str, Any] = {
        "kernels": family,
        "onednn_isa": level if family == "onednn" else "",
        "x86_level": int(level_word[-1]) if level_word.startswith("x86-64-v") else 1 if level_word == "x86-64" else 0,
    }
    for flag in KERNEL_FLAGS:
        out[f"cpu_{flag}"] = flag in words
    return out
