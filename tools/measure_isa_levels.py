"""Measure the known deviations that involve oneDNN or Eigen on every kernel level this CPU reaches.

    .tox/py/bin/python tools/measure_isa_levels.py [--engines tf,torch,keras,torch-nn] [--levels avx2,avx512_core]
        [--entries id,probe,...] [--per-entry 24] [--probes 120] [--only-configs tf@eigen,tf@avx2] [--jobs 2]
        [--out measure.json]
    .tox/py/bin/python tools/measure_isa_levels.py --summary measure.json [--detail ENTRY --by dtype,op,padding]

For each engine it starts one process per kernel configuration: oneDNN capped at each level this CPU runs
(ONEDNN_MAX_CPU_ISA; TF with TF_ENABLE_ONEDNN_OPTS=1), TensorFlow with oneDNN off (`tf@eigen`: TF_ENABLE_ONEDNN_OPTS=0,
its Eigen kernels, what an AVX2 CPU runs by default) and `torch@mkldnn=off` (ATen's own kernels). Each process
replays every covering entry's example and a seeded sample of cases drawn inside the entry's `when` (SPACES says
from where; wrong-values entries get three times --per-entry, crash entries a quarter), plus the PROBES (regions no
entry covered: TF's Eigen backprop on dilation and groups, 16-bit dtypes under a capped oneDNN, empty outputs ...),
with ONEDNN_VERBOSE=1 so that each case records whether a oneDNN convolution ran, which implementation
(`brg_conv_fwd:avx512_core`, `jit:avx2`, `gemm:jit`, `ref:any` ...) and the ISA oneDNN reports. Cases of entries that
document a crash run in a worker process (refconv.witness); a case that kills the measuring process anyway is
recorded as crashed and the process resumes after it.

A wrong-values entry reproduces on a case only where its witness holds there: the toggle configuration (tf@eigen,
keras@eigen, torch@mkldnn=off) passes the same case, or the output matches the entry's model.

The summary prints, per entry and configuration, `hits/cases` (cases that fail as the entry says, witnessed), the
example's outcome and the oneDNN implementations seen; probes print their outcome counts (--detail splits them by
case columns). Nothing here changes refconv's data; the results feed the `measured` lines of
refconv/data/known_deviations.toml (measured 2026-12-06 on a Sapphire Rapids Xeon: every level sse41 ...
avx512_core_amx, Eigen and mkldnn=off).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import subprocess
import sys
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LEVELS = ("sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni", "avx512_core_bf16",
          "avx512_core_fp16", "avx512_core_amx")
ENGINES = ("tf", "keras", "torch", "torch-nn")
SPECIAL = ["nan_mid", "nan_corner", "inf_mid", "inf_corner", "ninf_mid", "infmix_ring", "inf0_mid"]
GRADS = ["grad_input", "grad_filter", "transpose"]

# Where each entry's sample is drawn from: choices per ConvSpec field, then kept only inside the entry's `when`.
# 'pad' is SAME, VALID or EXPLICIT (explicit pads drawn 0-3 per side unless 'pads' says otherwise).
BASE: dict[str, Any] = {
    "n": [1, 2, 3], "h": list(range(1, 10)), "w": list(range(1, 10)), "c_in": [1, 2, 3, 4], "c_out": [1, 2, 3, 4],
    "kh": [1, 2, 3], "kw": [1, 2, 3], "sh": [1, 2], "sw": [1, 2], "dh": [1], "dw": [1], "groups": [1],
    "pad": ["SAME", "VALID", "EXPLICIT"], "dtype": ["float32"], "layout": ["NHWC"], "op": ["conv2d"],
    "bias": [True, False], "relu": [False], "values": ["normal"], "pads": [0, 1, 2, 3],
}
SPACES: dict[str, dict[str, Any]] = {
    "tf_valid_empty_output_raises": {"h": [1, 2, 3], "w": [1, 2, 3], "kh": [3, 5, 7], "kw": [3, 5, 7],
                                     "op": ["conv2d", "grad_input", "grad_filter"], "pad": ["VALID", "EXPLICIT"],
                                     "pads": [0, 1], "dtype": ["float32", "float16", "bfloat16", "float64"]},
    "tf_onednn_empty_output_wrong_shape": {"h": [1, 2, 3, 4], "w": [1, 2, 3, 4], "kh": [2, 3, 4, 5],
                                           "kw": [2, 3, 4, 5], "sh": [1, 2, 3], "sw": [1, 2, 3],
                                           "pad": ["VALID", "EXPLICIT"], "pads": [0, 1],
                                           "dtype": ["float32", "float16", "bfloat16"]},
    "torch_empty_output_raises": {"h": [1, 2, 3], "w": [1, 2, 3], "kh": [3, 4, 5], "kw": [3, 4, 5],
                                  "pad": ["VALID", "EXPLICIT"], "pads": [0, 1],
                                  "dtype": ["float32", "float16", "bfloat16", "float64"],
                                  "layout": ["NHWC", "NCHW", "channels_last"]},
    "torch_single_channel_ambiguous_strides_wrong_values": {
        "n": [1, 2, 3, 4, 5, 6, 8], "h": list(range(1, 13)), "w": [1, 2, 3, 4, 5, 6], "c_in": [1],
        "c_out": [1, 2, 3, 4], "kh": [1, 2, 3, 4], "kw": [1, 2, 3, 4], "sh": [1], "sw": [2, 3, 4],
        "dh": [1, 2], "layout": ["NHWC", "NCHW", "channels_last"]},
    "torch_mkldnn_bf16_one_output_column_wrong_values": {
        "n": [1, 2, 3, 4], "h": list(range(1, 13)), "w": [1, 2, 3, 4, 5, 6, 7], "c_in": [1, 2, 3, 8],
        "kh": [1, 2, 3, 4, 5], "kw": [1, 2, 3, 4, 5], "sh": [1, 2, 3, 4], "sw": [2, 3, 4], "dtype": ["bfloat16"],
        "layout": ["NHWC", "NCHW", "channels_last"]},
    "keras_empty_output_raises": {"h": [1, 2, 3], "w": [1, 2, 3], "kh": [3, 4, 5], "kw": [3, 4, 5],
                                  "pad": ["VALID"], "dtype": ["float32", "float16", "bfloat16", "float64"]},
    "keras_channels_first_bias_on_width": {
        "h": list(range(2, 17)), "w": list(range(2, 17)), "c_out": [2, 3, 4, 5, 6, 7, 8], "kh": [1, 3],
        "kw": [1, 3], "sw": [1, 2], "layout": ["NCHW"], "bias": [True], "dtype": ["float32", "bfloat16"],
        "pad": ["SAME", "VALID"]},
    "tf_onednn_batched_single_channel_row_stride_wrong_values": {
        "n": [2, 3, 4, 5, 6, 8], "h": list(range(2, 10)), "w": [1, 2, 3, 4, 5], "c_in": [1], "c_out": [1, 2, 3],
        "kh": [1, 2, 3], "kw": [1, 2, 3], "sh": [1], "sw": [2, 3, 4]},
    "tf_onednn_bf16_one_output_column_wrong_values": {
        "n": [1, 2, 3, 4], "h": list(range(1, 13)), "w": [1, 2, 3, 4, 5, 6, 7], "c_in": [1, 2, 3, 8],
        "kh": [1, 2, 3], "kw": [1, 2, 3], "sh": [1, 2, 3, 4], "sw": [2, 3, 4], "dtype": ["bfloat16"]},
    "torch_mkldnn_bf16_nan_inf_spread_left": {
        "n": [1, 2], "h": [9, 11], "w": [9, 11], "c_in": [1, 3, 8], "kh": [3, 5], "kw": [3, 5], "sh": [1, 2, 3],
        "sw": [1, 2, 3], "pad": ["SAME", "VALID"], "dtype": ["bfloat16"], "values": SPECIAL, "bias": [False],
        "layout": ["NHWC", "NCHW"]},
    "tf_onednn_bf16_nan_inf_spread_left": {
        "n": [1, 2], "h": [9, 11], "w": [9, 11], "c_in": [1, 3, 8], "kh": [3, 5], "kw": [3, 5], "sh": [1, 2, 3],
        "sw": [1, 2, 3], "pad": ["SAME", "VALID"], "dtype": ["bfloat16"], "values": SPECIAL, "bias": [False]},
    "torch_grad_empty_output_raises": {"h": [1, 2, 3], "w": [1, 2, 3], "kh": [3, 4, 5], "kw": [3, 4, 5],
                                       "pad": ["VALID", "EXPLICIT"], "pads": [0, 1], "op": GRADS,
                                       "dtype": ["float32", "float16", "bfloat16", "float64"]},
    "tf_grad_explicit_padding_nchw_raises": {"h": list(range(3, 9)), "w": list(range(3, 9)), "op": GRADS,
                                             "pad": ["EXPLICIT"], "layout": ["NCHW"],
                                             "dtype": ["float32", "bfloat16"]},
    "tf_grad_explicit_padding_groups_raises": {"h": list(range(3, 9)), "w": list(range(3, 9)), "op": GRADS,
                                               "pad": ["EXPLICIT"], "c_in": [2, 4], "c_out": [2, 4, 6],
                                               "groups": [2], "dtype": ["float32", "bfloat16", "float16"]},
    "tf_grad_explicit_padding_row_dilation_raises": {"h": list(range(5, 12)), "w": list(range(3, 10)), "op": GRADS,
                                                     "pad": ["EXPLICIT"], "dh": [2, 3], "dw": [1, 2],
                                                     "dtype": ["float32", "bfloat16", "float16"]},
    "tf_grad_explicit_padding_col_dilation_raises": {"h": list(range(3, 10)), "w": list(range(5, 12)), "op": GRADS,
                                                     "pad": ["EXPLICIT"], "dw": [2, 3], "dh": [1, 2],
                                                     "dtype": ["float32", "bfloat16", "float16"]},
    "keras_grad_empty_output_raises": {"h": [1, 2, 3], "w": [1, 2, 3], "kh": [3, 4, 5], "kw": [3, 4, 5],
                                       "pad": ["VALID"], "op": ["grad_input", "grad_filter"]},
    "tf_grad_float64_row_dilation_raises": {"h": list(range(5, 17)), "w": list(range(3, 17)), "op": GRADS,
                                            "dh": [2, 3], "dw": [1, 2], "pad": ["SAME", "VALID"],
                                            "dtype": ["float64"]},
    "tf_grad_float64_col_dilation_raises": {"h": list(range(3, 17)), "w": list(range(5, 17)), "op": GRADS,
                                            "dw": [2, 3], "dh": [1, 2], "pad": ["SAME", "VALID"],
                                            "dtype": ["float64"]},
    "keras_float64_dilated_transpose_raises": {"h": list(range(5, 17)), "w": list(range(3, 17)),
                                               "op": ["transpose"], "dh": [2, 3], "dw": [1, 2], "sh": [1],
                                               "sw": [1], "pad": ["SAME", "VALID"], "dtype": ["float64"]},
    "keras_float64_col_dilated_transpose_raises": {"h": list(range(3, 17)), "w": list(range(5, 17)),
                                                   "op": ["transpose"], "dw": [2, 3], "dh": [1, 2], "sh": [1],
                                                   "sw": [1], "pad": ["SAME", "VALID"], "dtype": ["float64"]},
    "tf_onednn_half_padding_only_columns_crash": {
        "n": [1, 2, 3], "h": list(range(20, 46)), "w": [1], "c_in": [1, 2, 3], "c_out": [1, 2], "kh": [1, 2],
        "kw": [1], "sh": [1, 2, 4], "sw": [2], "dw": [2, 3], "pad": ["EXPLICIT"], "pads": [1],
        "dtype": ["float16", "bfloat16"], "relu": [False, True]},
    "tf_grad_filter_explicit_empty_output_crash": {
        "n": [1, 2], "h": [1, 2, 3], "w": [1, 2, 3], "c_in": [1, 2, 3], "c_out": [1, 2], "kh": [2, 3, 4, 5],
        "kw": [2, 3, 4, 5], "sh": [1, 2], "sw": [1, 2], "pad": ["EXPLICIT"], "pads": [0, 1],
        "op": ["grad_filter"], "dtype": ["float32", "float16", "bfloat16", "float64"]},
}
# Probes: regions no entry covers yet, measured for new entries (TF's Eigen backprop on dilation and groups).
PROBES: dict[str, dict[str, Any]] = {
    "probe_grad_dilated": {"h": list(range(4, 17)), "w": list(range(4, 17)), "c_in": [1, 2, 3, 4, 8],
                           "c_out": [1, 2, 3, 5], "kh": [1, 2, 3, 4], "kw": [1, 2, 3, 4], "sh": [1, 2, 3],
                           "sw": [1, 2, 3], "dh": [1, 2, 3], "dw": [1, 2, 3], "op": GRADS,
                           "dtype": ["float32", "float16", "bfloat16", "float64"]},
    "probe_grad_grouped": {"h": list(range(3, 13)), "w": list(range(3, 13)), "c_in": [2, 4, 6, 8],
                           "c_out": [2, 4, 6, 8, 12], "groups": [2, 4, 6, 8], "kh": [1, 2, 3], "kw": [1, 2, 3],
                           "sh": [1, 2, 3], "sw": [1, 2, 3], "dh": [1, 2], "dw": [1, 2], "op": GRADS,
                           "dtype": ["float32", "float16", "bfloat16", "float64"]},
    "probe_conv_dilated_grouped": {"h": list(range(4, 13)), "w": list(range(4, 13)), "c_in": [2, 4], "c_out": [2, 4],
                                   "groups": [1, 2], "dh": [1, 2], "dw": [1, 2], "kh": [2, 3], "kw": [2, 3],
                                   "dtype": ["float32", "float16", "bfloat16", "float64"]},
    # TF routes 16-bit convs to oneDNN by the CPU's features, not by ONEDNN_MAX_CPU_ISA: below the level oneDNN
    # needs for a dtype (avx512_core for bfloat16, avx512_core_fp16 for float16) what happens?
    "probe_16bit": {"h": list(range(2, 12)), "w": list(range(2, 12)), "c_in": [1, 2, 4], "c_out": [1, 2, 4],
                    "groups": [1, 1, 2], "kh": [1, 2, 3], "kw": [1, 2, 3], "sh": [1, 2], "sw": [1, 2],
                    "op": ["conv2d", "grad_input", "grad_filter", "transpose"], "layout": ["NHWC", "NCHW"],
                    "dtype": ["float16", "bfloat16"]},
    # Keras' Conv2DTranspose (stride 1: Keras refuses strides with dilations) and its gradients through Conv2D
    "probe_keras_dilated": {"h": list(range(4, 17)), "w": list(range(4, 17)), "c_in": [1, 2, 3, 4, 8],
                            "c_out": [1, 2, 3, 5], "kh": [1, 2, 3, 4], "kw": [1, 2, 3, 4], "sh": [1], "sw": [1],
                            "dh": [1, 2, 3], "dw": [1, 2, 3], "pad": ["SAME", "VALID"], "op": GRADS,
                            "dtype": ["float32", "float16", "bfloat16", "float64"]},
    # Empty forward outputs through the gradients and the transposed conv (TF's Eigen backprop on an AVX2 CPU)
    "probe_empty_grads": {"h": [1, 2, 3, 4], "w": [1, 2, 3, 4], "c_in": [1, 2, 3], "c_out": [1, 2, 3],
                          "kh": [2, 3, 4, 5, 7], "kw": [2, 3, 4, 5, 7], "sh": [1, 2], "sw": [1, 2], "dh": [1, 1, 2],
                          "dw": [1, 1, 2], "pad": ["VALID", "EXPLICIT"], "pads": [0, 1], "op": GRADS,
                          "dtype": ["float32", "float16", "bfloat16", "float64"]},
    "probe_eigen_gradfilter_empty": {"h": [1, 2, 3, 4, 5, 6, 8], "w": [1, 2, 3, 4, 5, 6, 8], "c_in": [1, 2, 3],
                                     "c_out": [1, 2, 3], "kh": [2, 3, 4, 5], "kw": [2, 3, 4, 5], "sh": [1, 2, 3],
                                     "sw": [1, 2, 3], "pad": ["VALID"], "op": ["grad_filter"], "n": [1, 2],
                                     "dtype": ["float32"]},
}
PROBE_ENGINES = {"tf", "keras"}
PROBE_FILTERS = {  # a probe keeps the cases it is about
    "probe_grad_dilated": lambda s: max(s.dilations) >= 2 and s.groups == 1,
    "probe_grad_grouped": lambda s: s.groups >= 2,
    "probe_conv_dilated_grouped": lambda s: max(s.dilations) >= 2 or s.groups >= 2,
    "probe_16bit": lambda s: not (s.layout == "NCHW" and s.dtype == "float16"),
    "probe_keras_dilated": lambda s: max(s.dilations) >= 2,
    "probe_eigen_gradfilter_empty": lambda s: _empty(s) and _short_strides(s) == 1,
    # empty outputs, but not tf_grad_filter_explicit_empty_output_crash's region (each crash costs a restart)
    "probe_empty_grads": lambda s: _empty(s) and not (s.op == "grad_filter" and s.padding_kind == "EXPLICIT"
                                                      and max(s.dilations) == 1 and _short_strides(s) == 0),
}


def _empty(spec: Any) -> bool:
    from refconv.rows import case_columns

    return bool(case_columns(spec)["empty_output"])


def _short_strides(spec: Any) -> int:
    from refconv import deviations
    from refconv.rows import case_columns

    return int(deviations.derived(case_columns(spec))["short_strides"])


def configs(engines: list[str], levels: list[str]) -> list[dict[str, Any]]:
    """(name, label, env) per engine and kernel configuration."""
    out = []
    for engine in engines:
        for level in levels:
            env = {"ONEDNN_MAX_CPU_ISA": level.upper()}
            if engine in ("tf", "keras"):
                env["TF_ENABLE_ONEDNN_OPTS"] = "1"
            out.append({"name": f"{engine}@{level}", "engine": engine, "label": engine, "env": env})
        if engine in ("tf", "keras"):
            out.append({"name": f"{engine}@eigen", "engine": engine, "label": engine,
                        "env": {"TF_ENABLE_ONEDNN_OPTS": "0"}})
        else:
            out.append({"name": f"{engine}@mkldnn=off", "engine": engine, "label": f"{engine}:mkldnn=off", "env": {}})
    return out


def toggle_config(entry: Any, engine: str) -> str:
    """The configuration that plays an entry's toggle: tf@eigen, keras@eigen, torch@mkldnn=off."""
    if entry.toggle == "onednn=off":
        return f"{engine}@eigen"
    if entry.toggle == "mkldnn=off":
        return f"{engine}@mkldnn=off"
    return ""


def draw(space: dict[str, Any], rng: random.Random) -> Any:
    from refconv.spec import ConvSpec

    c = {key: rng.choice(values) for key, values in {**BASE, **space}.items()}
    if c["pad"] == "EXPLICIT":
        pads = space.get("pads", BASE["pads"])
        padding: Any = tuple((rng.choice(pads), rng.choice(pads)) for _ in range(2))
    else:
        padding = c["pad"]
    c_in, c_out = c["c_in"], c["c_out"]
    return ConvSpec(n=c["n"], h=c["h"], w=c["w"], c_in=c_in, c_out=c_out, kh=c["kh"], kw=c["kw"],
                    strides=(c["sh"], c["sw"]), dilations=(c["dh"], c["dw"]), padding=padding, groups=c["groups"],
                    bias=c["bias"], dtype=c["dtype"], layout=c["layout"], activation="relu" if c["relu"] else None,
                    op=c["op"], values=c["values"], seed=rng.randrange(1 << 30))


def sample(name: str, space: dict[str, Any], keep: Any, count: int) -> list[Any]:
    """`count` distinct seeded cases drawn from `space` that `keep` accepts."""
    from refconv.errors import SpecError

    rng = random.Random(zlib.crc32(name.encode()))
    found: dict[str, Any] = {}
    for _ in range(200_000):
        if len(found) >= count:
            break
        try:
            spec = draw(space, rng)
        except SpecError:
            continue
        if keep(spec):
            found.setdefault(spec.id, spec)
    return list(found.values())


def plan(engines: list[str], only: list[str], per_entry: int, probes: int) -> dict[str, list[dict[str, str]]]:
    """Per engine: [{'entry', 'case'}] to run (each covering entry's example and its sample, then the probes)."""
    from refconv import deviations
    from refconv.rows import case_columns

    out: dict[str, list[dict[str, str]]] = {engine: [] for engine in engines}
    for entry in deviations.load():
        if only and entry.id not in only:
            continue
        covered = [e for e in engines if entry.covers(e)]
        if not covered:
            continue
        space = SPACES.get(entry.id)
        # data-dependent wrong values fail on a fraction of their region: a larger sample; crashes cost a worker each
        count = per_entry * 3 if "mismatch" in entry.outcomes else per_entry if set(entry.outcomes) - {"crashed"} \
            else max(per_entry // 4, 4)
        picked = sample(entry.id, space, lambda s, e=entry: e.applies_case(case_columns(s)), count) if space else []
        ids = [entry.example] + [s.id for s in picked if s.id != entry.example]
        for engine in covered:
            out[engine] += [{"entry": entry.id, "case": case_id} for case_id in ids]
    for name, space in PROBES.items():
        if only and name not in only:
            continue
        picked = sample(name, space, PROBE_FILTERS[name], probes)
        for engine in engines:
            if engine in PROBE_ENGINES:
                out[engine] += [{"entry": name, "case": s.id} for s in picked]
    return out


# --- the child: one kernel configuration ------------------------------------------------------------------

def _fflush() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL(None).fflush(None)


def _verbose_since(path: Path, offset: int) -> tuple[int, list[str], str]:
    """(new offset, oneDNN conv implementations executed since offset, isa header text if any)."""
    _fflush()
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read().decode(errors="replace")
    impls, isa = [], ""
    for line in data.splitlines():
        if "onednn_verbose" not in line and "dnnl_verbose" not in line:
            continue
        fields = line.split(",")
        if "isa:" in line:
            isa = line.split("isa:", 1)[1].strip()
        if "exec" in fields:
            for i, f in enumerate(fields):
                if f in ("convolution", "deconvolution") and i + 1 < len(fields):
                    impls.append(f"{f[:6]}:{fields[i + 1]}")
    return offset + len(data.encode()), impls, isa


class _Seen:
    """What a model witness reads: the case, its inputs and the adapter's output on them."""

    def __init__(self, spec: Any, values: tuple[Any, ...], output: Any) -> None:
        self.spec, self.values, self.actual = spec, values, output

    def inputs(self) -> tuple[Any, ...]:
        return self.values

    def output(self) -> Any:
        return self.actual

    def passes(self, label: str) -> bool:
        raise NotImplementedError


def _resume(path: Path, cases: list[dict[str, str]]) -> tuple[list[dict[str, Any]], int]:
    """Results a previous run of this child wrote, and where to go on: a case it started and never finished
    killed that process (SIGSEGV, abort): it is recorded as crashed and skipped."""
    if not path.exists():
        return [], 0
    results: list[dict[str, Any]] = []
    started = -1
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if "start" in item:
            started = item["start"]
        else:
            results.append(item["result"])
            started = -1
    if started < 0:
        return results, len(results)
    case = cases[started]
    results.append({"entry": case["entry"], "case": case["case"], "outcome": "crashed",
                    "error": "the measuring process died on this case (in-process)", "impls": [], "onednn_isa": "",
                    "adapter_isa": "", "model_ok": None})
    with open(path, "a") as fh:
        fh.write(json.dumps({"result": results[-1]}) + "\n")
    return results, started + 1


def child(config: dict[str, Any], cases: list[dict[str, str]], out_path: Path) -> None:
    """Run the cases on this configuration's adapter; write one JSON result per case."""
    from refconv import deviations, hardware, ops, serve, witness
    from refconv.conformance.check import load_adapter, run
    from refconv.spec import ConvSpec

    log = out_path.with_suffix(".verbose")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved = os.dup(1)
    os.dup2(fd, 1)  # oneDNN's verbose lines go to C's stdout: into the log, read back after each case
    results, first = _resume(out_path.with_suffix(".partial"), cases)
    partial = open(out_path.with_suffix(".partial"), "a")  # noqa: SIM115 - kept open for the whole run
    try:
        adapter, reason = load_adapter(config["label"])
        if adapter is None:
            raise SystemExit(reason)
        entries = {d.id: d for d in deviations.load()}
        offset, isa_text = 0, ""
        for index, item in enumerate(cases):
            if index < first:
                continue
            partial.write(json.dumps({"start": index}) + "\n")  # a crash of this process names this case
            partial.flush()
            spec = ConvSpec.from_id(item["case"])
            entry = entries.get(item["entry"])
            crashy = entry is not None and "crashed" in entry.outcomes
            values = ops.inputs(spec)
            model_ok = None
            why = ops.unsupported_reason(adapter, spec)
            if why:
                outcome, error = "unsupported", str(why)
            elif crashy:  # in a worker (inherits this environment): a crash must not end the measurement
                comparison = witness.shared().compare(config["label"], spec, values)
                outcome, error = comparison.outcome, comparison.error or ""
            else:
                comparison = run(adapter, spec, values)
                outcome, error = comparison.outcome, comparison.error or ""
                if entry is not None and entry.model and outcome in entry.outcomes:
                    call, fetch = ops.bind(adapter, spec, values)
                    output = fetch(call())
                    model_ok = entry.model_matches(_Seen(spec, values, output))
            offset, impls, header = _verbose_since(log, offset)
            isa_text = header or isa_text
            level = hardware.onednn_level_text(isa_text)
            results.append({
                "entry": item["entry"], "case": spec.id, "outcome": outcome, "error": error.splitlines()[0][:160]
                if error else "", "impls": sorted(set(impls)), "onednn_isa": level if impls else "",
                "adapter_isa": serve.case_isa(adapter, spec), "model_ok": model_ok,
            })
            partial.write(json.dumps({"result": results[-1]}) + "\n")
            partial.flush()
    finally:
        partial.close()
        _fflush()
        os.dup2(saved, 1)
        os.close(fd)
        witness.close_shared()
    out_path.write_text(json.dumps({"config": config, "results": results}))


# --- the parent -----------------------------------------------------------------------------------------

def measure(cfgs: list[dict[str, Any]], work: dict[str, list[dict[str, str]]], tmp: Path, jobs: int) -> list[Any]:
    pending = list(cfgs)
    running: list[tuple[dict[str, Any], subprocess.Popen[bytes], float]] = []
    done = []
    while pending or running:
        while pending and len(running) < jobs:
            cfg = pending.pop(0)
            safe = cfg["name"].replace("@", "_").replace("=", "_").replace(":", "_")
            cases_path, out_path = tmp / f"{safe}.cases.json", tmp / f"{safe}.json"
            if not cfg.get("restarts"):
                out_path.with_suffix(".partial").unlink(missing_ok=True)
                out_path.unlink(missing_ok=True)
            cases_path.write_text(json.dumps({"config": cfg, "cases": work[cfg["engine"]]}))
            env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")}
            env.update(cfg["env"], ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
            proc = subprocess.Popen([sys.executable, __file__, "--child", str(cases_path), str(out_path)], env=env,
                                    stderr=subprocess.PIPE)
            running.append((cfg, proc, time.time()))
        time.sleep(0.5)
        for item in list(running):
            cfg, proc, start = item
            if proc.poll() is None:
                continue
            running.remove(item)
            safe = cfg["name"].replace("@", "_").replace("=", "_").replace(":", "_")
            out_path = tmp / f"{safe}.json"
            if proc.returncode != 0 or not out_path.exists():
                err = proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else ""
                partial = out_path.with_suffix(".partial")
                restarts = cfg.setdefault("restarts", 0)
                if partial.exists() and proc.returncode < 0 and restarts < 100:  # killed by a case: go on after it
                    cfg["restarts"] = restarts + 1
                    print(f"{cfg['name']}: died ({proc.returncode}); resuming after the case", file=sys.stderr)
                    pending.insert(0, cfg)
                    continue
                print(f"{cfg['name']}: failed ({proc.returncode}): {err}", file=sys.stderr)
                continue
            done.append(json.loads(out_path.read_text()))
            print(f"{cfg['name']}: {len(done[-1]['results'])} cases in {time.time() - start:.0f} s", file=sys.stderr)
    return done


def summarize(measured: list[dict[str, Any]]) -> str:
    """Per entry: per configuration, witnessed hits / cases run, the example's outcome, oneDNN impls seen."""
    from refconv import deviations

    entries = {d.id: d for d in deviations.load()}
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    for block in measured:
        for r in block["results"]:
            by[block["config"]["name"]].setdefault(r["entry"], []).append(r)
    lines = []
    names = [b["config"]["name"] for b in measured]
    for entry_id in list(entries) + list(PROBES):
        cols = [n for n in names if entry_id in by[n]]
        if not cols:
            continue
        entry = entries.get(entry_id)
        lines.append(f"\n== {entry_id}" + (f" ({entry.describe_witness()}; outcomes {list(entry.outcomes)})"
                                             if entry else " (probe)"))
        for name in cols:
            rows = by[name][entry_id]
            engine = name.split("@")[0]
            ran = [r for r in rows if r["outcome"] != "unsupported"]
            impls = Counter(i for r in ran for i in r["impls"])
            impl_text = ", ".join(f"{i} {c}" for i, c in impls.most_common(4)) or "no oneDNN conv"
            if entry is None:
                counts = Counter(r["outcome"] for r in ran)
                lines.append(f"  {name:28s} {dict(counts)}  [{impl_text}]")
                continue
            toggle = toggle_config(entry, engine)
            toggled = {r["case"]: r["outcome"] for r in by.get(toggle, {}).get(entry_id, [])} if toggle else {}
            hits, unwitnessed = 0, 0
            for r in ran:
                if r["outcome"] not in entry.outcomes:
                    continue
                if (entry.toggle and toggled.get(r["case"]) != "pass") or (entry.model and not r["model_ok"]):
                    unwitnessed += 1
                else:
                    hits += 1
            example = next((r for r in rows if r["case"] == entry.example), None)
            ex = example["outcome"] if example else "-"
            other = Counter(r["outcome"] for r in ran if r["outcome"] not in entry.outcomes)
            lines.append(f"  {name:28s} {hits:3d}/{len(ran):<3d} example {ex:12s}"
                         + (f" unwitnessed {unwitnessed}" if unwitnessed else "")
                         + (f" other {dict(other)}" if other else "")
                         + (f" unsupported {len(rows) - len(ran)}" if len(rows) > len(ran) else "")
                         + f"  [{impl_text}]")
    return "\n".join(lines)


def detail(measured: list[dict[str, Any]], name: str, keys: list[str]) -> str:
    """Outcome counts of one entry or probe per configuration, split by case columns (dtype, op, padding ...)."""
    from refconv.rows import case_columns
    from refconv.spec import ConvSpec

    lines = [f"== {name} by {', '.join(keys)}"]
    for block in measured:
        rows = [r for r in block["results"] if r["entry"] == name]
        if not rows:
            continue
        counts: Counter[tuple[Any, ...]] = Counter()
        for r in rows:
            cols = case_columns(ConvSpec.from_id(r["case"]))
            cols["dilated"] = max(cols["dh"], cols["dw"]) >= 2
            counts[(*(cols.get(k) for k in keys), r["outcome"])] += 1
        lines.append(f"  {block['config']['name']}")
        for key, count in sorted(counts.items(), key=str):
            lines.append(f"    {' '.join(map(str, key)):60s} {count}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("CASES", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--engines", default="tf,torch,keras")
    parser.add_argument("--levels", default=",".join(LEVELS), help="oneDNN caps (this CPU's levels by default)")
    parser.add_argument("--entries", default="", help="entry ids or probe names (default: all)")
    parser.add_argument("--per-entry", type=int, default=24, help="sampled cases per entry besides its example")
    parser.add_argument("--probes", type=int, default=120, help="cases per probe")
    parser.add_argument("--no-eigen", action="store_true", help="skip the tf@eigen / torch@mkldnn=off configurations")
    parser.add_argument("--only-configs", default="", help="configuration names to run, e.g. tf@eigen,tf@avx2")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="measure_isa_levels.json")
    parser.add_argument("--summary", default="", help="print the summary of a saved --out file and stop")
    parser.add_argument("--detail", default="", help="with --summary: one entry or probe split by --by columns")
    parser.add_argument("--by", default="dtype,op,padding_kind", help="case columns for --detail")
    args = parser.parse_args(argv)
    if args.child:
        data = json.loads(Path(args.child[0]).read_text())
        child(data["config"], data["cases"], Path(args.child[1]))
        return 0
    if args.summary:
        measured = json.loads(Path(args.summary).read_text())["measured"]
        print(detail(measured, args.detail, args.by.split(",")) if args.detail else summarize(measured))
        return 0
    from refconv import hardware

    engines = [e for e in args.engines.split(",") if e]
    here = hardware.onednn_levels()
    levels = [lv for lv in args.levels.split(",") if lv in here]
    cfgs = configs(engines, levels)
    if args.only_configs:
        wanted = set(args.only_configs.split(","))
        cfgs = [c for c in cfgs if c["name"] in wanted]
    elif args.no_eigen:
        cfgs = [c for c in cfgs if "eigen" not in c["name"] and "mkldnn" not in c["name"]]
    work = plan(engines, [e for e in args.entries.split(",") if e], args.per_entry, args.probes)
    tmp = Path(args.out).with_suffix(".d")
    tmp.mkdir(exist_ok=True)
    measured = measure(cfgs, work, tmp, args.jobs)
    out = Path(args.out)
    previous = json.loads(out.read_text())["measured"] if out.exists() else []
    names = {b["config"]["name"] for b in measured}
    merged = [b for b in previous if b["config"]["name"] not in names] + measured
    out.write_text(json.dumps({"cpu_features": hardware.cpu_features(), "measured": merged}))
    print(f"# cpu: {hardware.cpu_features()}; oneDNN levels {', '.join(here)}")
    print(summarize(merged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
