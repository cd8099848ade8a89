"""Repro scripts for the training ops: `<run_dir>/repro/<case-id>__<adapter>.py` plus the op's inputs in an npz.

A conv2d finding gets a standalone script (refconv.repro); a training-op finding gets a short script that
replays the case through refconv's own seam (ops.inputs / ops.reference / ops.bind, the adapter loaded by
label), so it needs refconv and the adapter's framework. Exit status: 1 when the finding reproduces, 0
when the framework now agrees, 2 when the adapter cannot be loaded, 3 when it agrees but this machine does not
run the kernels the finding was seen on ("not reproducible on this CPU (needs ...)"; refconv.repro.seen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refconv.repro_hardware import KERNELS_ADAPTER, Seen, docstring_safe, seen_block
from refconv.repro_paths import REPRO_DIR, script_path
from refconv.spec import ConvSpec

NAMES = {"grad_input": ("dy", "w"), "grad_filter": ("x", "dy"), "transpose": ("y", "w")}

_SCRIPT = '''#!/usr/bin/env python3
"""Reproduce a refconv finding on a training op. Needs refconv and the adapter's framework; run: python {name}

{message}
case {case_id}: {words}
The inputs are seeded (ops.inputs); the same arrays are saved in {npz} ({names}).
{seen}
Exit status: 1 reproduces, 0 agrees (fixed), 2 cannot run here, 3 not reproducible on this CPU (the output agrees,
but this machine does not run the kernels it was seen on; REFCONV_REPRO_CPU_FLAGS stands in for its flags).
"""
import os
import sys

LABEL = {label!r}
CASE = {case_id!r}


def main():
    sys.stdout.reconfigure(errors="backslashreplace")  # an engine's message may hold bytes the terminal cannot show
    import adapters
    from refconv import ops
    from refconv.compare import compare
    from refconv.spec import ConvSpec

    spec = ConvSpec.from_id(CASE)
    say_seen()
    values = ops.inputs(spec)
    expected, bound = ops.reference(spec, values)
    try:
        adapter = adapters.load(LABEL)
    except Exception as exc:
        print(f"cannot load {{LABEL}}: {{exc}}")
        return 2
    reason = ops.unsupported_reason(adapter, spec)
    if reason:
        print(f"{{LABEL}} declines {{CASE}}: {{reason}}")
        return 2
    call, fetch = ops.bind(adapter, spec, values)
    try:
        result = compare(spec, expected, bound, fetch(call()))
    except Exception as exc:
        print(f"{{LABEL}}: raised {{type(exc).__name__}}: {{exc}}")
        return 1
    print(result.message(LABEL, spec))
    if result.outcome != "pass":
        return 1
    elsewhere = not_this_cpu()  # agreeing on other kernels than the finding's is no fix: exit 3
    return 0 if elsewhere is None else elsewhere


if __name__ == "__main__":
    sys.exit(main())
'''
_SEEN_AT = "\n\ndef main():"  # the record of where it was seen, and its checks, go before main()


def write(run_dir: Path, spec: ConvSpec, label: str, message: str, *values: Any, where: Seen | None = None) -> str:
    """Write the op's inputs (once per case) and the script; returns the script's path relative to run_dir.

    `where`: where the finding was seen (refconv.repro.seen), checked before the script calls agreement a fix.
    """
    folder = Path(run_dir) / REPRO_DIR
    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / f"{spec.id}.npz"
    names = NAMES[spec.op]
    if not npz.exists():
        bf16 = values[0].dtype.name == "bfloat16"
        arrays = {n: (v.view(np.uint16) if bf16 else v) for n, v in zip(names, values, strict=True)}
        tmp = npz.with_name(npz.name + ".tmp.npz")
        np.savez(tmp, bfloat16=np.array(bf16), **arrays)  # type: ignore[arg-type]
        tmp.replace(npz)
    path = script_path(run_dir, spec.id, label)
    tmp_script = path.with_name(path.name + ".tmp")
    tmp_script.write_text(script(spec, label, message, path.name, npz.name, where))
    tmp_script.replace(path)
    return str(path.relative_to(run_dir))


def script(spec: ConvSpec, label: str, message: str, name: str, npz: str, where: Seen | None = None) -> str:
    """The text of a training-op repro script, with the record of where it was seen and its hardware checks."""
    lines = where.lines() if where else []
    text = _SCRIPT.format(name=name, message=message, case_id=spec.id, words=spec.describe(), npz=npz,
                          names=", ".join(NAMES[spec.op]), label=label, seen=docstring_safe("\n".join(["", *lines])))
    head, sep, tail = text.partition(_SEEN_AT)
    return head + seen_block(where) + KERNELS_ADAPTER + sep + tail
