"""Run the reference's chunks on every core, each chunk's GEMM on one BLAS thread (docs/performance.md).

Why: the fast path makes one GEMM per chunk (48 for the base benchmark case). With OpenBLAS's own
threads each of those calls is a barrier between the caller and BLAS's worker thread; on a loaded
machine the worker is often off-core when the barrier comes, and the chunk GEMMs measured 12x slower
than on one thread (25 ms against 2 ms each, load 20 on 2 cores), while one big GEMM pays that once.
So while chunks run, BLAS is held at one thread and the chunks are shared, one at a time, among as
many threads as BLAS had (the caller plus a persistent pool): no barrier per chunk, and a thread that
is preempted simply takes fewer chunks. (Dropping to one thread when the threads found their cores
busy measured worse on a loaded machine: the stride-2 case at 0.30-0.92 of its GEMM in five
processes against 0.63-1.47.) Each thread keeps its im2col workspace between calls, so no chunk or
call page-faults a fresh buffer.

Only OpenBLAS (what NumPy's wheels ship) is steered, through its C API found in the process's mapped
libraries; with any other BLAS, or none found, chunks run in the calling thread as before.
"""

from __future__ import annotations

import contextvars
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# (get, set) symbol pairs of the OpenBLAS builds NumPy and SciPy wheels or distributions ship
_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


class _OpenBlas:
    """The thread count of the OpenBLAS that NumPy uses, pinned to one while any chunk loop runs."""

    def __init__(self, get: Callable[[], int], set_: Callable[[int], None], corename: str) -> None:
        self.get, self.set, self.corename = get, set_, corename
        self.lock = threading.Lock()
        self.active = 0  # chunk loops running now: the first pins, the last restores
        self.saved = 1

    def pin(self) -> int:
        """Set BLAS to one thread; return how many it had (the threads the chunks may use)."""
        with self.lock:
            if self.active == 0:
                self.saved = max(1, int(self.get()))
                self.set(1)
            self.active += 1
            return self.saved

    def unpin(self) -> None:
        with self.lock:
            self.active -= 1
            if self.active == 0:
                self.set(self.saved)


def _find_openblas() -> _OpenBlas | None:
    """NumPy's OpenBLAS through ctypes, or None (another BLAS, or no /proc to find it in)."""
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure NumPy's BLAS is loaded and mapped
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths, key=lambda p: ("numpy" not in p, p)):  # NumPy's own first (SciPy ships another)
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                get.restype, set_.argtypes, set_.restype = ctypes.c_int, [ctypes.c_int], None
                core = getattr(lib, get_name.replace("get_num_threads", "get_corename"), None)
                if core is not None:
                    core.restype = ctypes.c_char_p
                return _OpenBlas(get, set_, core().decode() if core is not None else "unknown")
    return None


def describe() -> str:
    """The BLAS that chunks are steered on, for benchmark provenance: kernel and thread count, or why none."""
    blas = _blas()
    if blas is None:
        return "no OpenBLAS found: chunks run in the calling thread with the BLAS's own threads"
    return f"OpenBLAS kernel {blas.corename}, {blas.get()} threads (1 per chunk GEMM while chunks run)"


_BLAS: _OpenBlas | None = None
_FOUND = False
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_STATE_LOCK = threading.Lock()
_LOCAL = threading.local()


def _blas() -> _OpenBlas | None:
    global _BLAS, _FOUND
    with _STATE_LOCK:
        if not _FOUND:
            _BLAS, _FOUND = _find_openblas(), True
        return _BLAS


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _STATE_LOCK:
        if _POOL is None or threads > _POOL_SIZE:  # grows when BLAS is given more threads
            _POOL, _POOL_SIZE = ThreadPoolExecutor(threads, thread_name_prefix="refconv-chunks"), threads
        return _POOL


def _forget_pool() -> None:
    """A forked child has none of the parent's pool threads: start a new pool there when needed."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def workspace(nbytes: int, keep_bytes: int) -> np.ndarray:
    """This thread's reusable byte buffer, 64-byte aligned and already touched; fresh when over keep_bytes."""
    if nbytes > keep_bytes:
        return _aligned(nbytes)
    buf: np.ndarray | None = getattr(_LOCAL, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _LOCAL.buf = _aligned(nbytes)
        buf.fill(0)  # fault the pages in now, once, not in the first chunk of every call
    return buf[:nbytes]


def _aligned(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start: start + nbytes]


def _cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_chunks(chunks: list[T], make_worker: Callable[[], Callable[[T], None]]) -> None:
    """Call a worker (one per thread, from make_worker) on every chunk, BLAS pinned to one thread meanwhile.

    Chunks go to as many threads as BLAS had (at most one per CPU and per chunk). One chunk, or no
    steerable BLAS: all in the calling thread, BLAS untouched. The result does not depend on the
    thread count: each chunk is one single-threaded GEMM whichever thread runs it.
    """
    blas = _blas() if len(chunks) > 1 else None
    if blas is None:
        _drain(iter(chunks), make_worker, threading.Lock())
        return
    threads = min(blas.pin(), len(chunks), _cpus())
    todo, lock = iter(chunks), threading.Lock()
    helpers: list[Future[None]] = []
    try:
        if threads > 1:
            pool = _pool(threads - 1)
            # numpy's errstate lives in a context variable: the helpers run in a copy of the caller's
            helpers = [pool.submit(contextvars.copy_context().run, _drain, todo, make_worker, lock)
                       for _ in range(threads - 1)]
        _drain(todo, make_worker, lock)
    finally:
        try:
            for helper in helpers:
                if not helper.cancel():  # a helper that never started has nothing left to do
                    helper.result()
        finally:
            blas.unpin()


def _drain(todo: Iterator[T], make_worker: Callable[[], Callable[[T], None]], lock: threading.Lock) -> None:
    """Take chunks one at a time until none is left: a thread that is preempted just takes fewer."""
    worker = None
    while True:
        with lock:
            chunk = next(todo, None)
        if chunk is None:
            return
        if worker is None:
            worker = make_worker()
        worker(chunk)
