"""Adapter worker processes: one per adapter label (and per concurrent case), frameworks imported only there.

The main process never imports a framework. A `WorkerHandle` owns one spawned process that loads one
adapter (`adapters.load(label)`) and answers requests `(case_id, repeats)`: it rebuilds the case's inputs
from the id (`refconv.inputs.make_inputs` is seeded, so they are bit-identical to the main process's),
asks `supports`, calls the adapter once (the warm-up, whose output is returned) and then `repeats` more
times, timing only `Prepared.call` for a PreparedAdapter (or the whole `conv2d` otherwise).

A worker that dies raises `WorkerCrashed` naming the signal or exit code; a request that exceeds its
timeout kills the worker and raises `WorkerTimeout`. Either way the handle starts a fresh process on the
next request. `InProcessHandle` answers the same requests in the calling process (--no-isolation): for
debugging and for measuring the cost of isolation; it cannot survive a crash and enforces no timeout.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterable
from typing import Any

import numpy as np

from refconv import ops
from refconv.spec import ConvSpec

LOAD_TIMEOUT_S = 300.0  # importing TensorFlow on a busy 2-core machine can take a while
ERROR_CHARS = 2000  # framework error texts can be pages long; rows keep the head
THREAD_ENV_PREFIXES = (
    "OMP_", "MKL_", "OPENBLAS_", "KMP_", "TF_", "TORCH_", "PYTORCH_", "XLA_", "JAX_", "DNNL_", "ONEDNN_",
    "CUDA_", "NVIDIA_", "ORT_",
)


class WorkerCrashed(Exception):
    """The worker process died during a request; the message names the signal or exit code."""


class WorkerTimeout(Exception):
    """A request took longer than its timeout; the worker was killed."""


class WorkerCallError(Exception):
    """A function run by `call` raised in the worker; the message holds its error text."""


class WorkerLoadError(Exception):
    """The adapter could not be constructed in the worker."""


def thread_env() -> dict[str, str]:
    """Environment variables that steer threads and precision (recorded in provenance)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(THREAD_ENV_PREFIXES)}


def error_text(exc: BaseException) -> str:
    """'Type: message', trimmed to ERROR_CHARS."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + " [...]"


def describe_adapter(adapter: Any) -> dict[str, Any]:
    """Version, settings and thread environment of a loaded adapter, asked where it runs."""
    settings_fn = getattr(adapter, "settings", None)
    settings = settings_fn() if callable(settings_fn) else {}
    return {
        "version": str(adapter.version()),
        "settings": {str(k): v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in settings.items()},
        "env": thread_env(),
        "cpu_count": os.cpu_count(),
        "pid": os.getpid(),
    }


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def serve(adapter: Any, case_id: str, repeats: int) -> dict[str, Any]:
    """Answer one request: {'kind': 'output'|'unsupported'|'raised', 'output', 'error', 'times_ms'}."""
    from adapters.base import Unsupported

    spec = ConvSpec.from_id(case_id)
    values = ops.inputs(spec)
    try:
        reason = ops.unsupported_reason(adapter, spec)
        if reason:
            return {"kind": "unsupported", "output": None, "error": str(reason), "times_ms": []}
        call, fetch = ops.bind(adapter, spec, values)
        output = fetch(call())  # the warm-up; its output is the one compared
        times = [_timed(call) for _ in range(repeats)]
        return {"kind": "output", "output": np.asarray(output), "error": "", "times_ms": times}
    except Unsupported as exc:
        return {"kind": "unsupported", "output": None, "error": str(exc), "times_ms": []}
    except Exception as exc:
        return {"kind": "raised", "output": None, "error": error_text(exc), "times_ms": []}


def call_in_worker(adapter: Any, target: str, args: tuple[Any, ...]) -> Any:
    """Run `target(adapter, *args)` where the adapter lives; `target` is 'package.module:function'.

    The seam for work other than one timed case (metamorphic relations, user arrays, variant checks):
    the function's arguments and result must pickle, and it never ships framework objects back.
    """
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(adapter, *args)


def _exit_with_parent(every_s: float = 1.0) -> None:
    """A worker stuck in a framework call never reads its pipe: watch the parent so a kill -9 leaves no orphan."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="refconv-parent-watch", daemon=True).start()


def _child_main(label: str, conn: Any) -> None:
    """The worker's loop: load the adapter, say hello, answer requests until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's decision
    _exit_with_parent()
    import adapters

    try:
        adapter = adapters.load(label)
        info = describe_adapter(adapter)
    except Exception as exc:
        conn.send(("load_error", error_text(exc)))
        return
    conn.send(("ready", info))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            return
        if message[0] == "stop":
            return
        if message[0] == "call":
            try:
                conn.send(("result", ("value", call_in_worker(adapter, message[1], message[2]))))
            except Exception as exc:
                conn.send(("result", ("error", error_text(exc))))
            continue
        _, case_id, repeats = message
        try:
            reply = serve(adapter, case_id, repeats)
        except Exception:  # a bug in serve itself: report it as the adapter's error rather than dying silently
            reply = {"kind": "raised", "output": None, "error": traceback.format_exc()[-ERROR_CHARS:], "times_ms": []}
        conn.send(("result", reply))


def exit_description(exitcode: int | None) -> str:
    """'killed by SIGSEGV (signal 11)' or 'exited with code 3'."""
    if exitcode is None:
        return "stopped answering (no exit code)"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name} (signal {-exitcode})"
    return f"exited with code {exitcode}"


class WorkerHandle:
    """One adapter's worker process, started on demand and replaced after a crash or a timeout."""

    def __init__(self, label: str, start_method: str = "spawn", load_timeout: float = LOAD_TIMEOUT_S) -> None:
        self.label = label
        self._ctx: Any = multiprocessing.get_context(start_method)
        self._load_timeout = load_timeout
        self._process: Any = None
        self._conn: Any = None
        self.info: dict[str, Any] = {}
        self.restarts = 0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> dict[str, Any]:
        """Spawn the worker and wait for its hello (version, settings); WorkerLoadError if the adapter fails."""
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_child_main, args=(self.label, child), daemon=True,
                                    name=f"refconv-worker[{self.label}]")
        process.start()
        child.close()  # so that the worker's death reads as EOF here
        self._process, self._conn = process, parent
        kind, payload = self._receive(self._load_timeout, "loading the adapter")
        if kind == "load_error":
            self.kill()
            raise WorkerLoadError(f"adapter {self.label!r} failed to load: {payload}")
        self.info = payload
        return payload

    def request(self, case_id: str, repeats: int, timeout: float) -> dict[str, Any]:
        """Run one case in the worker (starting it if needed)."""
        if not self.alive:
            if self._process is not None:
                self.restarts += 1
            self.start()
        self._conn.send(("case", case_id, repeats))
        _, reply = self._receive(timeout, f"case {case_id}")
        return reply

    def call(self, target: str, *args: Any, timeout: float = 60.0) -> Any:
        """`call_in_worker(adapter, target, args)` in the worker; WorkerCallError, WorkerCrashed, WorkerTimeout."""
        if not self.alive:
            if self._process is not None:
                self.restarts += 1
            self.start()
        self._conn.send(("call", target, args))
        _, (kind, value) = self._receive(timeout, f"call {target}")
        if kind == "error":
            raise WorkerCallError(f"{self.label} worker: {target} raised {value}")
        return value

    def _receive(self, timeout: float, doing: str) -> tuple[str, Any]:
        conn, process = self._conn, self._process
        try:
            ready = conn.poll(timeout)
        except (EOFError, OSError):
            ready = True
        if not ready:
            self.kill()
            raise WorkerTimeout(f"{self.label} worker did not answer within {timeout:g} s ({doing}); killed")
        try:
            return conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):
            process.join(5)
            code = process.exitcode
            self._discard()
            raise WorkerCrashed(f"{self.label} worker {exit_description(code)} ({doing})") from None

    def kill_process(self) -> None:
        """SIGKILL the process (safe from another thread: the owner then reads EOF)."""
        process = self._process
        if process is not None and process.is_alive():
            process.kill()
            process.join(5)

    def kill(self) -> None:
        """Kill the process now; the next request starts a fresh one."""
        self.kill_process()
        self._discard()

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def close(self) -> None:
        """Ask the worker to stop, then make sure it has."""
        if self._conn is not None and self.alive:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(("stop",))
            self._process.join(2)
        self.kill()


class InProcessHandle:
    """The same requests answered in this process (--no-isolation): no crash survival, no timeout."""

    def __init__(self, label: str) -> None:
        import adapters

        self.label = label
        try:
            self.adapter = adapters.load(label)
        except Exception as exc:
            raise WorkerLoadError(f"adapter {label!r} failed to load: {error_text(exc)}") from None
        self.info = describe_adapter(self.adapter)
        self.restarts = 0

    def start(self) -> dict[str, Any]:
        return self.info

    def request(self, case_id: str, repeats: int, timeout: float) -> dict[str, Any]:
        return serve(self.adapter, case_id, repeats)

    def call(self, target: str, *args: Any, timeout: float = 60.0) -> Any:
        try:
            return call_in_worker(self.adapter, target, args)
        except Exception as exc:
            raise WorkerCallError(f"{self.label}: {target} raised {error_text(exc)}") from None

    def kill(self) -> None:
        """Nothing to kill: an in-process call cannot be interrupted."""

    def kill_process(self) -> None:
        """Nothing to kill: an in-process call cannot be interrupted."""

    def close(self) -> None:
        """Nothing to release."""


Handle = WorkerHandle | InProcessHandle


class Pool:
    """Worker handles, one per (thread, adapter label): each concurrent case gets its own processes."""

    def __init__(self, labels: Iterable[str], isolation: bool = True) -> None:
        self.labels = tuple(labels)
        self.isolation = isolation
        self._local = threading.local()
        self._spare: dict[str, list[Handle]] = {}  # started by `start` in one thread, adopted by the first user
        self._all: list[Handle] = []
        self._lock = threading.Lock()

    def handle(self, label: str) -> Handle:
        """This thread's handle for `label` (created, not yet started, on first use)."""
        handles: dict[str, Handle] = self._local.__dict__.setdefault("handles", {})
        if label not in handles:
            with self._lock:
                spare = self._spare.get(label)
                handles[label] = spare.pop() if spare else self._new(label)
        return handles[label]

    def _new(self, label: str) -> Handle:
        handle: Handle = WorkerHandle(label) if self.isolation else InProcessHandle(label)
        self._all.append(handle)
        return handle

    def start(self) -> dict[str, dict[str, Any]]:
        """Start one worker per label now (for their versions and settings); {label: info}.

        The started workers are kept as spares that the first thread to need each label adopts, so a
        one-thread run starts every framework once. Raises WorkerLoadError.
        """
        info = {}
        for label in self.labels:
            with self._lock:
                handle = self._new(label)
            info[label] = handle.start()
            with self._lock:
                self._spare.setdefault(label, []).append(handle)
        return info

    def kill_all(self) -> None:
        """Kill every worker at once (Ctrl-C): in-flight requests end as crashes the runner discards."""
        with self._lock:
            handles = list(self._all)
        for handle in handles:
            handle.kill_process()

    def close(self) -> None:
        with self._lock:
            handles, self._all, self._spare = list(self._all), [], {}
        for handle in handles:
            handle.close()
