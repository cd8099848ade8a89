"""The standalone repro script of an upstream report (inputs inlined), and running it as a user would.

The case's seeded inputs are regenerated bit for bit with NumPy alone, or embedded (base64) when they cannot
be; `execute` runs a script with this Python and no PYTHONPATH, and its result is remembered beside the script
(`<id>.out.json`) for as long as the script's text is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from refconv import ops, repro, repro_hardware
from refconv.errors import RefconvError
from refconv.spec import ConvSpec

EXECUTE_TIMEOUT_S = 120.0  # one script run; a TF import alone takes seconds on a loaded machine
OUTPUT_CAP = 4000  # characters of the script's output kept in the report


# --- the repro script --------------------------------------------------------------------------


def _seeded_loader(spec: ConvSpec) -> str:
    """load_inputs() drawing the case's inputs exactly as refconv.inputs does (NumPy only)."""
    seed = [spec.seed, spec.n, spec.h, spec.w, spec.c_in, spec.c_out, spec.kh, spec.kw]
    bias = f"rng.standard_normal({spec.c_out}).astype(np.{spec.dtype})" if spec.bias else "None"
    return (
        "\n\ndef load_inputs():\n"
        '    """x (NHWC), w (HWIO), b or None: the case\'s seeded inputs, as refconv drew them."""\n'
        f"    rng = np.random.default_rng({seed!r})\n"
        f"    x = rng.standard_normal({tuple(spec.input_shape)!r}).astype(np.{spec.dtype})\n"
        f"    w = rng.standard_normal({tuple(spec.kernel_shape)!r}).astype(np.{spec.dtype})\n"
        f"    b = {bias}  # drawn last, so x and w do not depend on it\n"
        "    return x, w, b, False\n"
    )


def _embedded_loader(values: tuple[Any, ...]) -> str:
    """load_inputs() decoding the exact inputs from base64 (bfloat16 as its bits, returned as float32)."""
    x = values[0]
    bf16 = x.dtype.name == "bfloat16"
    lines = ["import base64", "import zlib", "", "", "def _array(text, dtype, shape):",
             "    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype).reshape(shape)", "", "",
             "def load_inputs():",
             '    """x (NHWC), w (HWIO), b or None: the case\'s exact inputs, embedded."""']
    names = []
    for name, a in zip(("x", "w", "b"), values, strict=True):
        names.append(name)
        if a is None:
            lines.append(f"    {name} = None")
            continue
        raw = np.ascontiguousarray(a.view(np.uint16) if bf16 else a)
        text = base64.b64encode(zlib.compress(raw.tobytes(), 9)).decode()
        chunks = "\n".join(f"        {text[i:i + 96]!r}" for i in range(0, len(text), 96)) or "        ''"
        lines.append(f"    {name} = _array(\n{chunks},\n        np.{raw.dtype.name}, {tuple(raw.shape)!r})")
        if bf16:
            lines.append(f"    {name} = ({name}.astype(np.uint32) << 16).view(np.float32)")
    lines.append(f"    return {', '.join(names)}, {bf16!r}\n")
    return "\n" + "\n".join(lines)


def _loads_exactly(code: str, values: tuple[Any, ...]) -> bool:
    """Does the loader code give back these very arrays, bit for bit?"""
    namespace: dict[str, Any] = {"np": np}
    exec(compile(code, "<loader>", "exec"), namespace)  # our own generated code, numpy only
    got = namespace["load_inputs"]()
    for mine, theirs in zip(got[:3], values, strict=True):
        if (mine is None) != (theirs is None):
            return False
        if mine is not None and (mine.dtype != theirs.dtype or mine.tobytes() != theirs.tobytes()):
            return False
    return True


def inline_loader(spec: ConvSpec) -> str:
    """Code of load_inputs() for a script with no files beside it: seeded when that is exact, else embedded."""
    values = ops.inputs(spec)
    if spec.dtype != "bfloat16":
        code = _seeded_loader(spec)
        if _loads_exactly(code, values):
            return code
    return _embedded_loader(values)


def standalone_script(spec: ConvSpec, label: str, message: str, name: str,
                      where: repro_hardware.Seen | None = None) -> str:
    """The repro script of refconv.repro with the inputs inlined, so it runs on its own.

    `where`: where the finding was seen (refconv.repro_hardware.seen): the script states the CPU and kernels, and
    says "not reproducible on this CPU" (exit 3) rather than "fixed" where this machine runs other kernels.
    """
    return repro.script(spec, label, message, load=inline_loader(spec), name=name, where=where)


def has_template(label: str, spec: ConvSpec | None = None) -> bool:
    """Does the repro of this label call the framework directly (no refconv import in the script)?"""
    try:
        return repro.direct(spec or ConvSpec(n=1, h=3, w=3, c_in=1, c_out=1, kh=1, kw=1), label)
    except (RefconvError, ValueError, TypeError):  # options a template cannot take
        return False


# --- running it ----------------------------------------------------------------------------------


def execute(path: Path, timeout: float = EXECUTE_TIMEOUT_S) -> dict[str, Any]:
    """Run a script with this Python, as a user would: its exit status, output, and where it ran."""
    env = {**os.environ, "PYTHONPATH": ""}  # the script must stand on its own
    where = {"host_platform": platform.platform(), "python": sys.version.split()[0]}
    try:
        proc = subprocess.run([sys.executable, path.name], capture_output=True, text=True, env=env, cwd=path.parent,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"returncode": None, "output": f"(no answer within {timeout:g} s)", **where}
    output = (proc.stdout + proc.stderr).strip()
    if len(output) > OUTPUT_CAP:
        output = output[:OUTPUT_CAP] + f"\n[... {len(output) - OUTPUT_CAP} more characters]"
    return {"returncode": proc.returncode, "output": output, **where}


def cached_result(script_path: Path, text: str) -> dict[str, Any] | None:
    """The remembered run of this very script text (<id>.out.json beside it), or None."""
    try:
        old = json.loads(script_path.with_suffix(".out.json").read_text())
    except (OSError, ValueError):
        return None
    digest = hashlib.sha256(text.encode()).hexdigest()
    return old if isinstance(old, dict) and old.get("sha256") == digest else None


def _run_and_remember(script_path: Path, text: str, timeout: float) -> dict[str, Any]:
    """execute(), remembered beside the script for as long as its text is unchanged."""
    result = cached_result(script_path, text)
    if result is None:
        result = {"sha256": hashlib.sha256(text.encode()).hexdigest(), **execute(script_path, timeout)}
        write_atomic(script_path.with_suffix(".out.json"), json.dumps(result, indent=1))
    return result


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader never sees it half written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
