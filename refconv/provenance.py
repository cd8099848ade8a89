"""Where and how a run was made: versions, CPU, threads, precision settings, environment, times, command line.

`collect()` builds provenance.json for a run directory; `row_columns()` picks the key fields every result
row carries (so rows from different runs stay self-describing after they are concatenated). `host_columns()`
gives the same fields as seen by the process that ran a case, plus the Dask worker it ran on, so rows of a
sweep spread over a cluster each name the machine that produced them.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import refconv
from refconv.hardware import cpu_features
from refconv.worker import thread_env

FRAMEWORK_MODULES = ("tensorflow", "torch", "jax", "onnxruntime")


def utc_now() -> str:
    """ISO 8601 UTC time with seconds, e.g. 2026-11-26T10:15:00Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cpu_info() -> dict[str, Any]:
    """CPU model and flags from /proc/cpuinfo (where there is one), logical and usable core counts."""
    model, flags = platform.processor() or platform.machine(), list[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = value.split()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {"model": model, "flags": " ".join(flags), "features": cpu_features(), "logical_cores": os.cpu_count(),
            "usable_cores": usable, "machine": platform.machine()}


def git_commit() -> dict[str, Any]:
    """The commit of the source tree refconv runs from, and whether it has local changes; {} outside git."""
    root = Path(refconv.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return ""


def main_process_frameworks() -> list[str]:
    """Frameworks imported in this process (the runner's main process should have none)."""
    return sorted(m for m in FRAMEWORK_MODULES if m in sys.modules)


def collect(argv: list[str], adapters: dict[str, dict[str, Any]], unavailable: dict[str, str],
            started: str) -> dict[str, Any]:
    """provenance.json: `adapters` maps each label to what its worker reported (version, settings, env)."""
    return {
        "refconv_version": refconv.__version__,
        "git": git_commit(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "numpy_version": np.__version__,
        "pandas_version": _version("pandas"),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu": cpu_info(),
        "env": thread_env(),
        "adapters": adapters,
        "unavailable_adapters": unavailable,
        # Frameworks imported in the main process: should stay empty, they belong in the workers.
        "main_process_frameworks": main_process_frameworks(),
        "command": argv,
        "cwd": os.getcwd(),
        "started_utc": started,
        "finished_utc": "",
    }


def row_columns(prov: dict[str, Any]) -> dict[str, Any]:
    """The provenance fields copied into every result row (names appended to rows.RESULT_COLUMNS)."""
    return {
        "host": prov.get("host", ""),
        "cpu_model": prov.get("cpu", {}).get("model", ""),
        "cpu_features": prov.get("cpu", {}).get("features", ""),
        "python": prov.get("python", ""),
        "numpy_version": prov.get("numpy_version", ""),
        "refconv_version": prov.get("refconv_version", ""),
        "git_commit": prov.get("git", {}).get("commit", ""),
        "worker": "",
    }


@functools.cache
def _process_columns() -> dict[str, Any]:
    # Cached: a process's host, CPU and versions do not change, and git is a subprocess.
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_info()["model"],
        "cpu_features": cpu_features(),
        "python": sys.version.split()[0],
        "numpy_version": np.__version__,
        "refconv_version": refconv.__version__,
        "git_commit": git_commit().get("commit", ""),
    }


def host_columns() -> dict[str, Any]:
    """The row_columns fields as seen by this process, with `worker` naming the Dask worker ('' outside one)."""
    return {**_process_columns(), "worker": dask_worker_label()}


def dask_worker_label() -> str:
    """'name (address)' of the Dask worker running the calling task, its address when unnamed; '' elsewhere."""
    distributed = sys.modules.get("distributed")  # never imported here: a Dask worker has it loaded already
    if distributed is None:
        return ""
    try:
        worker = distributed.get_worker()
    except ValueError:  # not inside a Dask task
        return ""
    address, name = str(worker.address), worker.name
    return address if name is None or str(name) == address else f"{name} ({address})"


def host_provenance() -> dict[str, Any]:
    """What provenance.json records about one cluster host: versions, CPU, thread environment."""
    return {
        "host": socket.gethostname(),
        "worker": dask_worker_label(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy_version": np.__version__,
        "refconv_version": refconv.__version__,
        "git": git_commit(),
        "cpu": cpu_info(),
        "env": thread_env(),
    }
