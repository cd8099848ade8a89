"""A worker handle whose process runs on another environment's interpreter (a pinned engine version).

`RemoteHandle` is a `WorkerHandle` whose process is `ENV/bin/python -I -m refconv.worker_remote`, a plain
subprocess connected over a unix socket with an authkey instead of a spawn child's pipe. Requests, batches,
`call`, crash and timeout handling are WorkerHandle's own: a death reads as WorkerCrashed naming the signal,
a timeout kills the process, the next request starts a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import tempfile
import time
from multiprocessing.connection import Listener
from pathlib import Path
from typing import Any

from refconv.worker import LOAD_TIMEOUT_S, WorkerHandle, WorkerLoadError, exit_description
from refconv.worker_remote import AUTHKEY_ENV


class _Child:
    """A Popen with the few multiprocessing.Process methods WorkerHandle uses."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()  # negative: killed by that signal, as multiprocessing reports it


class RemoteHandle(WorkerHandle):
    """One pinned adapter's worker, on the interpreter `python` of its environment."""

    def __init__(self, label: str, python: str | Path, load_timeout: float = LOAD_TIMEOUT_S,
                 log_path: str | None = None, lock_path: str | None = None) -> None:
        super().__init__(label, load_timeout=load_timeout, log_path=log_path, lock_path=lock_path)
        self.python = str(python)
        self._listener: Any = None
        self._socket_dir = ""

    def spawn(self) -> None:
        """Start the subprocess; it connects back while `hello` waits."""
        authkey = os.urandom(32)
        self._socket_dir = tempfile.mkdtemp(prefix="refconv-worker-")
        address = os.path.join(self._socket_dir, "socket")
        self._listener = Listener(address, family="AF_UNIX", authkey=authkey)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env[AUTHKEY_ENV] = authkey.hex()
        out: Any = subprocess.DEVNULL
        if self.log_path:
            out = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps its own copy of the fd
        try:
            popen = subprocess.Popen(
                [self.python, "-I", "-m", "refconv.worker_remote", address, self.label, self.log_path or "",
                 self.lock_path or ""], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        self._process, self._conn = _Child(popen), None

    def hello(self) -> dict[str, Any]:
        """Accept the subprocess's connection, then wait for its hello like any worker."""
        if self._conn is None:
            self._accept(self._load_timeout)
        return super().hello()

    def _accept(self, timeout: float) -> None:
        # Listener.accept has no timeout: wait on its socket, watching for an early death (a broken environment).
        sock = self._listener._listener._socket
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready:
                break
            if not self._process.is_alive() or time.monotonic() > deadline:
                code = self._process.exitcode
                self.kill()
                what = exit_description(code) if code is not None else f"did not connect within {timeout:g} s"
                raise WorkerLoadError(f"adapter {self.label!r} worker on {self.python} {what} before connecting"
                                      + (f"; see {self.log_path}" if self.log_path else ""))
        self._conn = self._listener.accept()
        self._close_listener()

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = ""

    def _discard(self) -> None:
        super()._discard()
        self._close_listener()


def handle_for(label: str, log_path: str | None = None, lock_path: str | None = None) -> WorkerHandle:
    """The worker handle of a pinned label: its environment's interpreter, or the local one when it has the pin."""
    from refconv import envs

    if not envs.needs_env(label):
        return WorkerHandle(label, log_path=log_path, lock_path=lock_path)
    try:
        env = envs.ensure(label)
    except envs.EnvError as exc:
        raise WorkerLoadError(f"adapter {label!r}: {exc}") from None
    return RemoteHandle(label, env.python, log_path=log_path, lock_path=lock_path)
