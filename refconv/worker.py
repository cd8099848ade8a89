"""Adapter worker processes: one per adapter label (and per concurrent batch), frameworks imported only there.

The main process never imports a framework. A `WorkerHandle` owns one spawned process that loads one
adapter (`adapters.load(label)`) and answers messages on a pipe:
- ("batch", [(case_id, expected, bound), ...], repeats, keep): the worker runs the cases in order
  (`refconv.serve.serve_case`: inputs rebuilt from the id, the call, its timings, the comparison) and
  sends one ("case", index, Reply) per case as it finishes, so the main process knows which case was in
  flight when the worker died or hung;
- ("call", target, args): `target(adapter, *args)` for anything else (relations, user arrays);
- ("stop",).
A worker that dies raises `WorkerCrashed` naming the signal or exit code; a reply that exceeds its
timeout kills the worker and raises `WorkerTimeout`. Either way the handle starts a fresh process on the
next message. A worker writes its stdout and stderr (framework banners, C++ logs) to its log file when
given one (`Pool(log_dir=...)`: the run directory's logs/<adapter>.log), never to the terminal.
`InProcessHandle` answers the same in the calling process (--no-isolation): for debugging and for
measuring the cost of isolation; it cannot survive a crash and enforces no timeout.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from refconv.hardware import cpu_features
from refconv.rows import clean_text
from refconv.serve import ERROR_CHARS, Reply, TimingLock, case_isa, error_text, failed, serve, serve_case
from refconv.spec import ConvSpec

__all__ = ["ERROR_CHARS", "Reply", "error_text", "serve", "serve_case"]  # re-exported: the worker's seams

LOAD_TIMEOUT_S = 300.0  # importing TensorFlow on a busy 2-core machine can take a while
THREAD_ENV_PREFIXES = (
    "OMP_", "MKL_", "OPENBLAS_", "KMP_", "TF_", "TORCH_", "PYTORCH_", "XLA_", "JAX_", "DNNL_", "ONEDNN_",
    "CUDA_", "NVIDIA_", "ORT_", "ATEN_",
)


class WorkerCrashed(Exception):
    """The worker process died during a request; the message names the signal or exit code."""


class WorkerTimeout(Exception):
    """A request took longer than its timeout; the worker was killed."""


class WorkerCallError(Exception):
    """A function run by `call` raised in the worker; the message holds its error text."""


class WorkerLoadError(Exception):
    """The adapter could not be constructed in the worker."""


# Set in every adapter's process unless the user set them: the workers run side by side, and OpenMP threads
# that spin-wait after each call (libgomp's default, torch's) take the cores the next adapter or the main
# process needs. Measured: a 300-case numpy,torch sweep at load 6 took 18.6 s isolated and 15.7 s in-process
# spinning, 11.1 s and 11.1 s passive (docs/performance.md). Recorded with the rest of the thread environment.
WORKER_ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


_DEFAULT_LOG_DIR: list[Path] = []  # set by the runner: workers started without a log file write there


def set_default_log_dir(path: Path | None) -> None:
    """Where workers started without their own log file (witness variants, relations) write their output."""
    _DEFAULT_LOG_DIR[:] = [] if path is None else [Path(path)]


def apply_env_defaults() -> None:
    """WORKER_ENV_DEFAULTS into this process's environment, before a framework is imported here."""
    for key, value in WORKER_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def thread_env() -> dict[str, str]:
    """Environment variables that steer threads and precision (recorded in provenance)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(THREAD_ENV_PREFIXES)}


def describe_adapter(adapter: Any) -> dict[str, Any]:
    """Version, settings and thread environment of a loaded adapter, asked where it runs."""
    settings_fn = getattr(adapter, "settings", None)
    settings = settings_fn() if callable(settings_fn) else {}
    return {
        "version": clean_text(adapter.version()),  # third-party text: any bytes, made encodable
        "settings": {clean_text(k): clean_text(v) if isinstance(v, str) else v if isinstance(v, (bool, int, float))
                     else clean_text(v) for k, v in settings.items()},
        "isa": case_isa(adapter, None),
        "cpu_features": cpu_features(),
        "env": thread_env(),
        "cpu_count": os.cpu_count(),
        "pid": os.getpid(),
    }


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


def log_name(label: str) -> str:
    """A file name for an adapter label: 'fake_adapters:Faulty:mode=segv' -> 'fake_adapters_Faulty_mode=segv.log'."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_") + ".log"


def _redirect_output(log_path: str | None) -> None:
    """Send this process's fds 1 and 2 (Python's and C++'s output alike) to the log file."""
    if not log_path:
        return
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _serve_batch(conn: Any, adapter: Any, message: tuple[Any, ...], lock: TimingLock) -> None:
    """Answer a batch case by case, so a death or a hang names the case in flight."""
    _, items, repeats, keep = message
    for index, (case_id, expected, bound) in enumerate(items):
        try:
            reply = serve_case(adapter, case_id, expected, bound, repeats, keep, lock)
        except Exception:  # a bug in serve itself: report it as the adapter's error rather than dying silently
            spec = ConvSpec.from_id(case_id)
            reply = Reply(failed("raised", spec, traceback.format_exc()[-ERROR_CHARS:], expected.shape, expected.size))
        conn.send(("case", index, reply))


def _child_main(label: str, conn: Any, log_path: str | None = None, lock_path: str | None = None) -> None:
    """The worker's loop: load the adapter, say hello, answer messages until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's decision
    _redirect_output(log_path)  # before the framework's import, whose banners go there too
    apply_env_defaults()  # read by OpenMP when the framework loads it
    _exit_with_parent()
    import adapters

    try:
        adapter = adapters.load(label)
        info = describe_adapter(adapter)
    except Exception as exc:
        conn.send(("load_error", error_text(exc)))
        return
    conn.send(("ready", info))
    lock = TimingLock(lock_path)
    inbox = _read_ahead(conn)
    while True:
        message = inbox.get()
        if message is None:  # the main process is gone
            return
        if message[0] == "stop":
            _quick_exit()
        if message[0] == "call":
            try:
                conn.send(("result", ("value", call_in_worker(adapter, message[1], message[2]))))
            except Exception as exc:
                conn.send(("result", ("error", error_text(exc))))
            continue
        _serve_batch(conn, adapter, message, lock)


def _read_ahead(conn: Any) -> queue.SimpleQueue[Any]:
    """Messages as they arrive, read by a thread: the main process's next message must not wait in a full
    pipe (and block its sender, which also feeds the other adapters' workers) while this worker computes."""
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                inbox.put(None)
                return
            inbox.put(message)
            if message[0] == "stop":
                return

    threading.Thread(target=read, name="refconv-inbox", daemon=True).start()
    return inbox


def _quick_exit() -> None:
    """Leave without the interpreter's teardown (a framework's can take most of a second): nothing is left
    to save but the log, which is flushed first. The pool waits for its workers' exit side by side."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


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

    def __init__(self, label: str, start_method: str = "spawn", load_timeout: float = LOAD_TIMEOUT_S,
                 log_path: str | None = None, lock_path: str | None = None) -> None:
        self.label = label
        self._ctx: Any = multiprocessing.get_context(start_method)
        self._load_timeout = load_timeout
        self.log_path, self.lock_path = log_path, lock_path
        self._process: Any = None
        self._conn: Any = None
        self.info: dict[str, Any] = {}
        self.restarts = 0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> dict[str, Any]:
        """Spawn the worker and wait for its hello (version, settings); WorkerLoadError if the adapter fails."""
        self.spawn()
        return self.hello()

    def spawn(self) -> None:
        """Start the process without waiting for it (a pool spawns every adapter's worker at once)."""
        if self.log_path is None and _DEFAULT_LOG_DIR:
            _DEFAULT_LOG_DIR[0].mkdir(parents=True, exist_ok=True)
            self.log_path = str(_DEFAULT_LOG_DIR[0] / log_name(self.label))
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_child_main, args=(self.label, child, self.log_path, self.lock_path),
                                    daemon=True, name=f"refconv-worker[{self.label}]")
        process.start()
        child.close()  # so that the worker's death reads as EOF here
        self._process, self._conn = process, parent

    def hello(self) -> dict[str, Any]:
        """Wait for a spawned worker's hello: its adapter's version and settings."""
        kind, payload = self._receive(self._load_timeout, "loading the adapter")
        if kind == "load_error":
            self.kill()
            raise WorkerLoadError(f"adapter {self.label!r} failed to load: {payload}")
        self.info = payload
        return payload  # type: ignore[no-any-return]

    def ensure_started(self) -> None:
        """Start the worker if it is not running (a fresh one after a crash or a timeout)."""
        if not self.alive:
            if self._process is not None:
                self.restarts += 1
            self.start()

    def send_batch(self, blob: bytes) -> None:
        """Send a pickled ("batch", items, repeats, keep) message (pickled once for every adapter)."""
        self.ensure_started()
        self._conn.send_bytes(blob)

    @property
    def connection(self) -> Any:
        """The pipe end to wait on (multiprocessing.connection.wait)."""
        return self._conn

    def receive_case(self, timeout: float, doing: str) -> tuple[int, Reply]:
        """The next ("case", index, Reply) of a batch; WorkerCrashed or WorkerTimeout."""
        _, index, reply = self._receive(timeout, doing)  # type: ignore[misc]
        return index, reply

    def call(self, target: str, *args: Any, timeout: float = 60.0) -> Any:
        """`call_in_worker(adapter, target, args)` in the worker; WorkerCallError, WorkerCrashed, WorkerTimeout."""
        self.ensure_started()
        self._conn.send(("call", target, args))
        _, (kind, value) = self._receive(timeout, f"call {target}")
        if kind == "error":
            raise WorkerCallError(f"{self.label} worker: {target} raised {value}")
        return value

    def _receive(self, timeout: float, doing: str) -> Any:
        conn, process = self._conn, self._process
        try:
            ready = conn.poll(timeout)
        except (EOFError, OSError):
            ready = True
        if not ready:
            self.kill()
            raise WorkerTimeout(f"{self.label} worker did not answer within {timeout:g} s ({doing}); killed")
        try:
            return conn.recv()
        except (EOFError, OSError):
            process.join(5)
            code = process.exitcode
            self._discard()
            raise WorkerCrashed(f"{self.label} worker {exit_description(code)} ({doing})") from None

    def reap(self) -> str:
        """Wait for a worker whose pipe broke to finish dying (killed after 5 s), discard it; how it ended."""
        process = self._process
        if process is None:
            return exit_description(None)
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)
        self._discard()
        return exit_description(process.exitcode)

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

    def request_stop(self) -> None:
        """Ask the worker to stop without waiting (a pool asks all its workers first, then waits)."""
        if self._conn is not None and self.alive:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(("stop",))
            self._discard()  # so that close() does not ask again

    def close(self) -> None:
        """Ask the worker to stop, then make sure it has."""
        self.request_stop()
        if self._process is not None:
            self._process.join(2)
        self.kill()


class InProcessHandle:
    """The same requests answered in this process (--no-isolation): no crash survival, no timeout."""

    def __init__(self, label: str) -> None:
        import adapters

        apply_env_defaults()  # as in a worker (no effect on a framework this process already imported)
        self.label = label
        try:
            self.adapter = adapters.load(label)
        except Exception as exc:
            raise WorkerLoadError(f"adapter {label!r} failed to load: {error_text(exc)}") from None
        self.info = describe_adapter(self.adapter)
        self.restarts = 0

    def start(self) -> dict[str, Any]:
        return self.info

    def serve_case(self, case_id: str, expected: Any, bound: Any, repeats: int, keep: bool) -> Reply:
        """One case of a batch, answered here."""
        return serve_case(self.adapter, case_id, expected, bound, repeats, keep)

    def call(self, target: str, *args: Any, timeout: float = 60.0) -> Any:
        try:
            return call_in_worker(self.adapter, target, args)
        except Exception as exc:
            raise WorkerCallError(f"{self.label}: {target} raised {error_text(exc)}") from None

    def kill(self) -> None:
        """Nothing to kill: an in-process call cannot be interrupted."""

    def kill_process(self) -> None:
        """Nothing to kill: an in-process call cannot be interrupted."""

    def request_stop(self) -> None:
        """Nothing to stop."""

    def close(self) -> None:
        """Nothing to release."""


Handle = WorkerHandle | InProcessHandle
