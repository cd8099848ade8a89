"""The pool of adapter worker handles of one run: one handle per (thread, adapter label).

It sits above `refconv.worker` (spawned workers on this interpreter, in-process handles) and
`refconv.remote` (workers on a pinned version's environment), choosing between them per label.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from refconv.remote import handle_for
from refconv.worker import Handle, InProcessHandle, WorkerHandle, WorkerLoadError, log_name


class Pool:
    """Worker handles, one per (thread, adapter label): each concurrent batch gets its own processes.

    `log_dir`: where the workers write their output (logs/<adapter>.log), None to inherit this process's.
    The pool's workers take turns for their timed calls (a lock file, see refconv.serve.TimingLock) while
    the rest of their work (inputs, warm-up, comparison) runs side by side.
    """

    def __init__(self, labels: Iterable[str], isolation: bool = True, log_dir: Path | None = None) -> None:
        self.labels = tuple(labels)
        self.isolation = isolation
        self.log_dir = log_dir
        self._local = threading.local()
        self._spare: dict[str, list[Handle]] = {}  # started by `start` in one thread, adopted by the first user
        self._all: list[Handle] = []
        self._lock = threading.Lock()
        self._lock_path = ""

    def handle(self, label: str) -> Handle:
        """This thread's handle for `label` (created, not yet started, on first use)."""
        handles: dict[str, Handle] = self._local.__dict__.setdefault("handles", {})
        if label not in handles:
            with self._lock:
                spare = self._spare.get(label)
                handles[label] = spare.pop() if spare else self._new(label)
        return handles[label]

    def _new(self, label: str) -> Handle:
        handle: Handle
        pinned = "@" in label.split(":", 1)[0]  # tf@2.19.1: a worker on that version's environment, always isolated
        if self.isolation or pinned:
            log = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                log = str(self.log_dir / log_name(label))
            if pinned:
                handle = handle_for(label, log_path=log, lock_path=self.timing_lock_path())
            else:
                handle = WorkerHandle(label, log_path=log, lock_path=self.timing_lock_path())
        else:
            handle = InProcessHandle(label)
        self._all.append(handle)
        return handle

    def timing_lock_path(self) -> str:
        """The lock file the pool's workers take turns on for their timed calls ('' without isolation)."""
        if not self.isolation:
            return ""
        if not self._lock_path:
            fd, self._lock_path = tempfile.mkstemp(prefix="refconv-timing-", suffix=".lock")
            os.close(fd)
        return self._lock_path

    def start(self) -> dict[str, dict[str, Any]]:
        """Start one worker per label now, all at once (for their versions and settings); {label: info}.

        The started workers are kept as spares that the first thread to need each label adopts, so a
        one-thread run starts every framework once. Raises WorkerLoadError (the others are then closed).
        """
        with self._lock:
            handles = [self._new(label) for label in self.labels]
        for handle in handles:  # the imports run side by side
            if isinstance(handle, WorkerHandle):
                handle.spawn()
        info = {}
        try:
            for handle in handles:
                info[handle.label] = handle.hello() if isinstance(handle, WorkerHandle) else handle.start()
        except WorkerLoadError:
            for handle in handles:
                handle.close()
            raise
        with self._lock:
            for handle in handles:
                self._spare.setdefault(handle.label, []).append(handle)
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
        for handle in handles:  # every worker told first: they exit side by side, not one after the other
            handle.request_stop()
        for handle in handles:
            handle.close()
        if self._lock_path:
            with contextlib.suppress(OSError):
                os.unlink(self._lock_path)
            self._lock_path = ""
